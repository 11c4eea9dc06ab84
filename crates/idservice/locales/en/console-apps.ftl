# The console's linked applications page: /admin/apps.

apps-purged-notice = The account was deleted; the application's failed links are queued again.
# $command: the command that adds one (shown as code)
apps-none = No linked applications. Add one with { $command }.
apps-application = Application
apps-url = URL
apps-licence = Licence
apps-users-linked = Users linked
apps-queue = Queue
apps-status = Status
apps-every-user = every user
# $group: the application's groups, as configured
apps-members-of = members of { $group }
apps-held = Held:
apps-ok = OK
apps-failed-links = Failed links
apps-none-failed = None.
apps-user = User
apps-error = Error
apps-fix = Fix
apps-delete-account = Delete account { $account }
apps-purge-title = Delete account { $account } in { $app }?
# $account: the downstream account's id (shown as code)
apps-purge-consequence = The account { $account } is deleted in { $app } for good, and the application's failed links are tried again.
apps-purge-button = Delete the account
