# The console's email outbox page: /admin/outbox.

outbox-retried-notice = The message is due now; the sender tries it next.
outbox-mail-off = Email is off: the configuration has no smtp section, so nothing is queued.
outbox-counts = { $queued } waiting, { $sent } sent, { $failed } given up.
outbox-waiting = Waiting
outbox-given-up = Given up
outbox-given-up-explain = A message given up no longer has its body (it may have held a reset link) and cannot be sent again; a user who needs a reset link asks for a new one, or send one from the user's page.
outbox-none = None.
outbox-queued = Queued
outbox-kind = Kind
outbox-to = To
outbox-subject = Subject
outbox-attempts = Attempts
outbox-next-try = Next try
# the column of the time a message was given up
outbox-given-up-at = Given up
outbox-last-error = Last error
outbox-action = Action
outbox-retry-label = Retry the message to { $recipient } now
outbox-retry = Retry now
outbox-not-waiting = This message is no longer waiting (it was sent or given up meanwhile).
