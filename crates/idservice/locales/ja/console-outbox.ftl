# コンソールの送信メールのページ: /admin/outbox

outbox-retried-notice = このメールを今すぐ送信するよう設定しました。次の送信処理で送信されます。
outbox-mail-off = メール送信は無効です。設定に smtp セクションがないため、メールはキューに登録されません。
outbox-counts = 送信待ち { $queued } 件、送信済み { $sent } 件、送信断念 { $failed } 件
outbox-waiting = 送信待ち
outbox-given-up = 送信断念
outbox-given-up-explain = 送信を断念したメールは、本文が削除されている（パスワード再設定リンクを含んでいた可能性があるため）ので、再送信できません。再設定リンクが必要なユーザーには新しいリンクを要求してもらうか、ユーザーのページから送信してください。
outbox-none = ありません。
outbox-queued = 登録日時
outbox-kind = 種類
outbox-to = 宛先
outbox-subject = 件名
outbox-attempts = 試行回数
outbox-next-try = 次回の試行
# 送信を断念した日時の列
outbox-given-up-at = 断念日時
outbox-last-error = 最後のエラー
outbox-action = 操作
outbox-retry-label = { $recipient } 宛てのメールを今すぐ再送信
outbox-retry = 今すぐ再送信
outbox-not-waiting = このメールはすでに送信待ちではありません（その間に送信されたか、送信が断念されました）。
