# コンソールの API トークンのページ: /admin/tokens

tokens-validity-30d = 30 日
tokens-validity-90d = 90 日
tokens-validity-180d = 180 日
tokens-validity-365d = 1 年
tokens-validity-never = 無期限
tokens-expired = 期限切れ
tokens-expires-within = { $days } 日以内に期限切れ
tokens-id = ID
tokens-scopes = スコープ
tokens-owner = 所有者
tokens-created = 作成日時
tokens-expires = 有効期限
tokens-state = 状態
tokens-action = 操作
tokens-never = 無期限
tokens-revoked = 失効済み
tokens-valid = 有効
tokens-revoke = 失効させる
tokens-create-heading = トークンの作成
tokens-valid-for = 有効期間
tokens-owner-email = 所有者のメールアドレス（有効期限が近づくと通知されます）
tokens-create-button = トークンを作成
tokens-revoked-notice = トークンを失効させました。
tokens-form-unreadable = フォームの内容を読み取れませんでした。
tokens-unknown-scope = 不明なスコープです。
tokens-no-scope = スコープを 1 つ以上選択してください。
# $id: 新しいトークンの ID（コードとして表示）
tokens-created-notice = トークン { $id } を作成しました。値は一度しか表示されないため、今すぐコピーしてください。
tokens-value = トークンの値
tokens-revoke-title = トークン { $id } を失効させますか？
tokens-revoke-consequence = このトークンを使用するクライアントは、今後すべて拒否されます。この操作は元に戻せません。
tokens-not-found-title = トークンが見つかりません
tokens-not-found = この ID の有効なトークンは存在しません。
