# 管理コンソール: すべてのページに共通

console-name = { $service } 管理コンソール
console-nav-label = コンソール
console-nav-users = ユーザー
console-nav-pending = 削除保留
console-nav-groups = グループ
console-nav-tokens = API トークン
console-nav-apps = 連携アプリケーション
console-nav-outbox = 送信メール
console-nav-runs = 同期の実行
console-nav-audit = 監査ログ
console-role-admin = 管理者
console-role-helpdesk = ヘルプデスク
console-signout = サインアウト
console-back-to-users = ユーザー一覧に戻る
console-cancel = キャンセル
console-unavailable-title = コンソールを利用できません
console-db-unreadable = データベースを読み取れませんでした。しばらくしてから、もう一度お試しください。
console-db-unreachable = 現在、コンソールからデータベースに接続できません。しばらくしてから、もう一度お試しください。
console-not-allowed-title = 許可されていません
console-not-allowed = ヘルプデスクの役割では、閲覧、ロック解除、パスワード再設定メールの送信のみ行えます。
console-csrf-refused = このフォームは有効期限が切れているか、このコンソールから送信されたものではありません。ページを開き直して、もう一度お試しください。
console-admin-name = 管理者名
console-signin-title = コンソールへのサインイン
console-form-expired = フォームの有効期限が切れました。もう一度サインインしてください。
