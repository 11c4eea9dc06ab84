# コンソールの連携アプリケーションのページ: /admin/apps

apps-purged-notice = アカウントを削除しました。このアプリケーションで失敗した連携は、再びキューに登録されました。
# $command: 追加するコマンド（コードとして表示）
apps-none = 連携アプリケーションはありません。{ $command } で追加してください。
apps-application = アプリケーション
apps-url = URL
apps-licence = ライセンス
apps-users-linked = 連携対象のユーザー
apps-queue = キューの長さ
apps-status = 状態
apps-every-user = すべてのユーザー
# $group: アプリケーションに設定されたグループ
apps-members-of = { $group } のメンバー
apps-held = 停止中:
apps-ok = 正常
apps-failed-links = 失敗した連携
apps-none-failed = ありません。
apps-user = ユーザー
apps-error = エラー
apps-fix = 対処
apps-delete-account = アカウント { $account } を削除
apps-purge-title = { $app } のアカウント { $account } を削除しますか？
# $account: 連携先アカウントの ID（コードとして表示）
apps-purge-consequence = { $app } のアカウント { $account } を完全に削除し、このアプリケーションで失敗した連携を再試行します。
apps-purge-button = アカウントを削除
