# 管理コンソール: /admin/pending (削除保留中のユーザー、一括完全削除)

pending-title = 削除保留
pending-purged = { $n } 人のユーザーを完全に削除しました。
pending-explain = 削除保留中のユーザーは、保持期間({ $days } 日)が終了すると完全に削除されます。
pending-none = 削除保留中のユーザーはいません。
pending-select = 選択
pending-select-user = { $user } を選択
pending-since = 削除保留の開始日時
pending-purged-on = 完全削除の予定日時
pending-purge-selected = 選択したユーザーを完全削除…
pending-first-page = 最初のページ
pending-next-page = 次のページ
pending-confirm-title = { $n } 人のユーザーを完全削除しますか?
pending-confirm-explain = これらのユーザーは、保持期間の終了を待たずに今すぐ完全に削除されます。この操作は元に戻せません。
pending-purge-button = { $n } 人のユーザーを完全削除
