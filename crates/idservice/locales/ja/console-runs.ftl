# コンソールの同期の実行のページ: /admin/runs

runs-intro = エージェントは実行のたびにこのサービスへ報告します（サービスが対応していれば、dirsync は自動的に報告します）。
runs-agents = エージェント
runs-no-agent = 実行を報告したエージェントはまだありません。
runs-agent = エージェント
runs-last-ended = 最後の実行の終了日時
runs-result = 結果
runs-expected-every = 想定される実行間隔
runs-quiet = 想定より長く報告がありません
runs-not-said = （指定なし）
runs-seconds = { $seconds } 秒
runs-runs = 実行履歴
runs-none = ありません。
runs-ended = 終了日時
runs-mode = モード
runs-changes = 変更
runs-details = 詳細
runs-older = 以前の実行
runs-mode-full = 完全同期
runs-mode-incremental = 差分同期
runs-dry-run = （ドライラン）
# $result: 下記の結果のいずれか。$code: エージェントの終了コード
runs-exit = { $result }（終了コード { $code }）
runs-synced = 同期完了
runs-some-failed = 一部のオブジェクトが失敗
runs-refused = 拒否
runs-stopped-unreachable = 停止: 接続できません
runs-stopped-state = 停止: ローカルの状態を読み取れません
runs-failed = 失敗
runs-failed-objects = 失敗またはスキップしたオブジェクト: { $n } 件
runs-no-changes = 変更なし
# 件数の区切り:「作成 3、更新 1」
runs-count-separator = 、
runs-count-created = 作成 { $n }
runs-count-updated = 更新 { $n }
runs-count-enabled = 有効化 { $n }
runs-count-disabled = 無効化 { $n }
runs-count-pending-deletion = 削除保留 { $n }
runs-count-restored = 復元 { $n }
runs-count-deleted = 削除 { $n }
runs-count-adopted = 既存オブジェクトの引き継ぎ { $n }
runs-count-groups-created = グループ作成 { $n }
runs-count-groups-updated = グループ更新 { $n }
runs-count-groups-deleted = グループ削除 { $n }
runs-count-members-added = メンバー追加 { $n }
runs-count-members-removed = メンバー削除 { $n }
runs-count-failed = 失敗 { $n }
