# コンソールのグループのページ: /admin/groups、/admin/groups/{id}

groups-search-label = 表示名（前方一致）
groups-search-button = 検索
groups-none-match = 条件に一致するグループはありません。
groups-display-name = 表示名
groups-external-id = 外部 ID
groups-members = メンバー数
groups-first-page = 最初のページ
groups-next-page = 次のページ
groups-not-found-title = グループが見つかりません
groups-not-found = この ID のグループは存在しません。
groups-id = ID
groups-last-modified = 最終更新日時
groups-owner = 所有者
groups-member-groups = メンバーグループ
groups-users = ユーザー
groups-none = ありません。
groups-user-name = ユーザー名
groups-state = 状態
