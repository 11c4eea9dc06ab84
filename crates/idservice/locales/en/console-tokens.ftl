# The console's API tokens page: /admin/tokens.

tokens-validity-30d = 30 days
tokens-validity-90d = 90 days
tokens-validity-180d = 180 days
tokens-validity-365d = 1 year
tokens-validity-never = Never expires
tokens-expired = Expired
tokens-expires-within = { $days ->
    [one] Expires within { $days } day
   *[other] Expires within { $days } days
}
tokens-id = id
tokens-scopes = Scopes
tokens-owner = Owner
tokens-created = Created
tokens-expires = Expires
tokens-state = State
tokens-action = Action
tokens-never = never
tokens-revoked = Revoked
tokens-valid = Valid
tokens-revoke = Revoke
tokens-create-heading = Create a token
tokens-valid-for = Valid for
tokens-owner-email = Owner's email (warned before expiry)
tokens-create-button = Create token
tokens-revoked-notice = The token was revoked.
tokens-form-unreadable = The form could not be read.
tokens-unknown-scope = Unknown scope.
tokens-no-scope = Choose at least one scope.
# $id: the new token's id (shown as code)
tokens-created-notice = Token { $id } created. Copy its value now: it is shown only once.
tokens-value = Token value
tokens-revoke-title = Revoke token { $id }?
tokens-revoke-consequence = Clients using this token are refused from now on. This cannot be undone.
tokens-not-found-title = No such token
tokens-not-found = There is no unrevoked token with this id.
