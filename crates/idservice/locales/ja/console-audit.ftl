# コンソールの監査ログのページ: /admin/audit

audit-none = 操作の記録はまだありません。
audit-when = 日時
audit-admin = 管理者
audit-action = 操作
audit-on = 対象
audit-result = 結果
audit-from = 接続元
audit-older = 以前の記録
