# The console's sync runs page: /admin/runs.

runs-intro = Agents report each run to this service (dirsync does so by itself where the service offers it).
runs-agents = Agents
runs-no-agent = No agent has reported a run yet.
runs-agent = Agent
runs-last-ended = Last run ended
runs-result = Result
runs-expected-every = Expected every
runs-quiet = Not reported for longer than expected
runs-not-said = (not said)
runs-seconds = { $seconds } s
runs-runs = Runs
runs-none = None.
runs-ended = Ended
runs-mode = Mode
runs-changes = Changes
runs-details = Details
runs-older = Older runs
runs-mode-full = full
runs-mode-incremental = incremental
runs-dry-run = (dry run)
# $result: one of the results below; $code: the agent's exit code
runs-exit = { $result } (exit { $code })
runs-synced = Synced
runs-some-failed = Some objects failed
runs-refused = Refused
runs-stopped-unreachable = Stopped: unreachable
runs-stopped-state = Stopped: local state unreadable
runs-failed = Failed
runs-failed-objects = { $n } object(s) failed or skipped
runs-no-changes = no changes
# between two counts: "created 3, updated 1"
runs-count-separator = { ", " }
runs-count-created = created { $n }
runs-count-updated = updated { $n }
runs-count-enabled = enabled { $n }
runs-count-disabled = disabled { $n }
runs-count-pending-deletion = pending deletion { $n }
runs-count-restored = restored { $n }
runs-count-deleted = deleted { $n }
runs-count-adopted = adopted { $n }
runs-count-groups-created = groups created { $n }
runs-count-groups-updated = groups updated { $n }
runs-count-groups-deleted = groups deleted { $n }
runs-count-members-added = members added { $n }
runs-count-members-removed = members removed { $n }
runs-count-failed = failed { $n }
