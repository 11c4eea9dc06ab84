# The administrator's console: what every page shares.

console-name = { $service } console
console-nav-label = Console
console-nav-users = Users
console-nav-pending = Pending deletion
console-nav-groups = Groups
console-nav-tokens = API tokens
console-nav-apps = Linked applications
console-nav-outbox = Email outbox
console-nav-runs = Sync runs
console-nav-audit = Audit log
console-role-admin = admin
console-role-helpdesk = helpdesk
console-signout = Sign out
console-back-to-users = Back to the users
console-cancel = Cancel
console-unavailable-title = Console unavailable
console-db-unreadable = The database could not be read. Try again later.
console-db-unreachable = The console cannot reach its database right now. Try again later.
console-not-allowed-title = Not allowed
console-not-allowed = Your role (helpdesk) may view, unlock and send reset emails, nothing else.
console-csrf-refused = This form has expired or did not come from this console. Open the page again and retry.
console-admin-name = Administrator name
console-signin-title = Console sign-in
console-form-expired = The form had expired. Sign in again.
