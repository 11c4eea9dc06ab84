# The console's groups pages: /admin/groups, /admin/groups/{id}.
# displayName, externalId, id and userName are the SCIM attributes' names.

groups-search-label = displayName starts with
groups-search-button = Search
groups-none-match = No groups match.
groups-display-name = displayName
groups-external-id = externalId
groups-members = Members
groups-first-page = First page
groups-next-page = Next page
groups-not-found-title = No such group
groups-not-found = There is no group with this id.
groups-id = id
groups-last-modified = Last modified
groups-owner = Owner
groups-member-groups = Member groups
groups-users = Users
groups-none = None.
groups-user-name = userName
groups-state = State
