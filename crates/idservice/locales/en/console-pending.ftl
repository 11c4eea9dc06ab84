# The administrator's console: /admin/pending (users pending deletion, bulk purge).

pending-title = Pending deletion
pending-purged = { $n } user(s) purged.
pending-explain = Users pending deletion are purged for good when the retention period ({ $days } days) ends.
pending-none = No users are pending deletion.
pending-select = Select
pending-select-user = Select { $user }
pending-since = Pending since
pending-purged-on = Purged on
pending-purge-selected = Purge selected…
pending-first-page = First page
pending-next-page = Next page
pending-confirm-title = Purge { $n } user(s)?
pending-confirm-explain = These users are deleted for good now, before the retention period ends. This cannot be undone.
pending-purge-button = Purge { $n } user(s)
