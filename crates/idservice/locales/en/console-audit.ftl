# The console's audit log page: /admin/audit.

audit-none = No actions yet.
audit-when = When
audit-admin = Administrator
audit-action = Action
audit-on = On
audit-result = Result
audit-from = From
audit-older = Older
