"""All DynamoDB access. Nothing above this module (and calsync.enterprise_store) touches boto3's
DynamoDB API.

One table, keyed `pk`/`sk`, designed from the access patterns:

| pattern                               | key                                                  |
|---------------------------------------|------------------------------------------------------|
| connection by user                    | pk=USER#{user_id}, sk=CONNECTION                     |
| encrypted tokens by user              | pk=USER#{user_id}, sk=TOKENS (separate item: status  |
|                                       | reads never fetch ciphertext)                        |
| connections by org (sync icons)       | GSI by_org: org_pk=ORG#{org_id}, org_sk=USER#{id}    |
| connection by push channel (webhook)  | GSI by_channel: channel_pk=CHANNEL#{channel_id}      |
| connection by Cronofy account `sub`   | GSI by_sub: sub_pk=SUB#{sub}                         |
| connections the reconciler is due to  | GSI by_due: due_pk=DUE, due_sk={next visit, UTC ISO} |
|   visit, most overdue first           |   (sparse: only connections that need visits)        |
| single-use OAuth state                | pk=OAUTHSTATE#{nonce}, sk=STATE, ttl                 |
| push notifications already accepted   | pk=NOTIFY#{channel}, sk={type}#{changes_since}, ttl; |
|   (replays) and the newest per channel|   sk=NEWEST                                          |
| the one user of a Cronofy account     | pk=ACCOUNT#{sub}, sk=OWNER (user_id, org_id)         |
| a user's calendar list (60 s cache)   | pk=USER#{user_id}, sk=CALENDARS, ttl                 |
| milestone mirror (newest version)     | pk=MILESTONE#{id}, sk=MIRROR                         |
| scheduled milestones of a user, by    | pk=MILESTONE#{id}, sk=SCHEDULED#{user}; GSI          |
|   start (backfill window)             |   by_assignee: assignee_pk=ASSIGNEE#{user},          |
|                                       |   assignee_sk={start UTC}#{milestone id}             |
| event written to a user's calendar    | pk=MILESTONE#{id}, sk=REF#{user}; GSI by_user_events |
|   (by milestone, and by user)         |   ref_user_pk=EVENTS#{user}, ref_user_sk={milestone} |
| backfill progress of a user           | pk=USER#{user_id}, sk=BACKFILL                       |
| busy periods of a user, one item per  | pk=USER#{user_id}, sk=BUSY#{Monday of the week}      |
|   week (start/end per event only)     |   (bounded items however busy the calendar)          |
| backfill chunk (milestone ids)        | pk=BACKFILL#{run_id}, sk=CHUNK#{n}, ttl              |
| open conflict of a (milestone, user)  | pk=ORG#{org_id}, sk=CONFLICT#{user}#{milestone}, ttl |
|   (an org's, or a user's: one query)  |   (deleted once its resolution is sent)              |

One query of a milestone's partition returns its mirror, its schedule index entries and every
event written for it, which is all milestone push needs to decide.

No request path scans.

Layout of the code: calsync.keys builds every key above; calsync.dynamo is the table (pagination,
conditional writes, batches); calsync.repositories holds one repository per aggregate. `Store` is all
of them over one table, the object the rest of the core is given.
"""

from __future__ import annotations

from calsync.errors import AccountInUse, ConflictError, MilestoneOrgMismatch
from calsync.repositories.backfill import BackfillRepository
from calsync.repositories.busy import BusyStore
from calsync.repositories.conflicts import ConflictRepository
from calsync.repositories.connections import ChannelOwner, ConnectionRepository, DueBacklog
from calsync.repositories.milestones import MilestonePartition, MilestoneRepository
from calsync.repositories.notifications import NotificationLog
from calsync.repositories.oauth_states import OAuthStateRepository

__all__ = ["AccountInUse", "BusyStore", "ChannelOwner", "ConflictError", "DueBacklog", "MilestoneOrgMismatch",
           "MilestonePartition", "Store"]


class Store(ConnectionRepository, MilestoneRepository, BackfillRepository, OAuthStateRepository, NotificationLog,
            ConflictRepository):
    """Every repository of the table but the busy weeks (BusyStore) and Enterprise Connect
    (calsync.enterprise_store.EnterpriseStore), over one client and table name."""
