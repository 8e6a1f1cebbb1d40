"""Every key of the one table, built in one place. The layout and the access patterns it serves are
described in calsync.store (and calsync.enterprise_store for Enterprise Connect's items).

A `Key` is the item's primary key, `{"pk", "sk"}`; the `*_pk` functions give partition values (of
the table or of a GSI) and the `*_of` functions read an id back out of one.
"""

from __future__ import annotations

Key = dict[str, str]

USER = "USER#"
ORG = "ORG#"
SUB = "SUB#"
CHANNEL = "CHANNEL#"
ACCOUNT = "ACCOUNT#"
OAUTH_STATE = "OAUTHSTATE#"
NOTIFY = "NOTIFY#"
MILESTONE = "MILESTONE#"
SCHEDULED = "SCHEDULED#"
REF = "REF#"
ASSIGNEE = "ASSIGNEE#"
EVENTS = "EVENTS#"
BACKFILL_RUN = "BACKFILL#"
CHUNK = "CHUNK#"
BUSY_WEEK = "BUSY#"
ENTERPRISE_MEMBER = "ECMEMBER#"
CONFLICT = "CONFLICT#"

CONNECTION_SK = "CONNECTION"
TOKENS_SK = "TOKENS"
BACKFILL_SK = "BACKFILL"
BUSY_SK = "BUSY"  # the busy periods' bookkeeping (as_of) when no week holds any
CALENDARS_SK = "CALENDARS"
ACCOUNT_SK = "OWNER"
MIRROR_SK = "MIRROR"
OAUTH_STATE_SK = "STATE"
NEWEST_SK = "NEWEST"
ENTERPRISE_SK = "ENTERPRISE"
ENTERPRISE_TOKENS_SK = "ENTERPRISE_TOKENS"
LONGEST_ASSIGNMENT_SK = "LONGEST_ASSIGNMENT"  # the longest milestone a user was scheduled for (not the connection's)
DUE_PK = "DUE"  # the one partition of GSI by_due

# The items of a user's partition that belong to its connection (deleted with it).
CONNECTION_ITEMS = (CONNECTION_SK, TOKENS_SK, BACKFILL_SK, BUSY_SK, CALENDARS_SK)


# ---- partitions ------------------------------------------------------------------------------

def user_pk(user_id: str) -> str:
    return f"{USER}{user_id}"


def user_of(pk: str) -> str:
    return pk.removeprefix(USER)


def org_pk(org_id: str) -> str:
    return f"{ORG}{org_id}"


def sub_pk(sub: str) -> str:
    return f"{SUB}{sub}"


def channel_pk(channel_id: str) -> str:
    return f"{CHANNEL}{channel_id}"


def milestone_pk(milestone_id: str) -> str:
    return f"{MILESTONE}{milestone_id}"


def milestone_of(pk: str) -> str:
    return pk.removeprefix(MILESTONE)


def assignee_pk(user_id: str) -> str:
    return f"{ASSIGNEE}{user_id}"


def events_pk(user_id: str) -> str:
    return f"{EVENTS}{user_id}"


# ---- a user's items --------------------------------------------------------------------------

def user_item(user_id: str, sk: str) -> Key:
    """One of the items of a user's partition (`sk` one of CONNECTION_ITEMS)."""
    return {"pk": user_pk(user_id), "sk": sk}


def connection(user_id: str) -> Key:
    return user_item(user_id, CONNECTION_SK)


def tokens(user_id: str) -> Key:
    return user_item(user_id, TOKENS_SK)


def backfill(user_id: str) -> Key:
    return user_item(user_id, BACKFILL_SK)


def calendars(user_id: str) -> Key:
    return user_item(user_id, CALENDARS_SK)


def busy_bookkeeping(user_id: str) -> Key:
    return user_item(user_id, BUSY_SK)


def busy_week_sk(week: str) -> str:
    return f"{BUSY_WEEK}{week}"


def busy_week(user_id: str, week: str) -> Key:
    return user_item(user_id, busy_week_sk(week))


def busy_week_part(user_id: str, week: str, generation: str, part: int) -> Key:
    """A further item of a week whose busy periods do not fit one item (BusyStore): `part` 1.. of the
    write `generation` that the week's own item names."""
    return user_item(user_id, f"{busy_week_sk(week)}#{generation}#{part}")


def week_of(sk: str) -> str:
    return sk.removeprefix(BUSY_WEEK).split("#")[0]


def busy_part_of(sk: str) -> tuple[str, int] | None:
    """(generation, part) of a week's further item, None for the week's own item."""
    rest = sk.removeprefix(BUSY_WEEK).split("#")
    return (rest[1], int(rest[2])) if len(rest) == 3 else None


# ---- other partitions ------------------------------------------------------------------------

def account_claim(sub: str) -> Key:
    return {"pk": f"{ACCOUNT}{sub}", "sk": ACCOUNT_SK}


def oauth_state(nonce: str) -> Key:
    return {"pk": f"{OAUTH_STATE}{nonce}", "sk": OAUTH_STATE_SK}


def notification(channel_id: str, kind: str, changes_since: str | None) -> Key:
    return {"pk": f"{NOTIFY}{channel_id}", "sk": f"{kind}#{changes_since or '-'}"}


def newest_notification(channel_id: str) -> Key:
    return {"pk": f"{NOTIFY}{channel_id}", "sk": NEWEST_SK}


def mirror(milestone_id: str) -> Key:
    return {"pk": milestone_pk(milestone_id), "sk": MIRROR_SK}


def scheduled(milestone_id: str, user_id: str) -> Key:
    return {"pk": milestone_pk(milestone_id), "sk": f"{SCHEDULED}{user_id}"}


def ref(milestone_id: str, user_id: str) -> Key:
    return {"pk": milestone_pk(milestone_id), "sk": f"{REF}{user_id}"}


def backfill_chunk(run_id: str, n: int) -> Key:
    return {"pk": f"{BACKFILL_RUN}{run_id}", "sk": f"{CHUNK}{n:05d}"}


def enterprise_org(org_id: str) -> Key:
    return {"pk": org_pk(org_id), "sk": ENTERPRISE_SK}


def enterprise_tokens(org_id: str) -> Key:
    return {"pk": org_pk(org_id), "sk": ENTERPRISE_TOKENS_SK}


def enterprise_member(org_id: str, user_id: str) -> Key:
    return {"pk": org_pk(org_id), "sk": f"{ENTERPRISE_MEMBER}{user_id}"}


def longest_assignment(user_id: str) -> Key:
    return {"pk": user_pk(user_id), "sk": LONGEST_ASSIGNMENT_SK}


def conflict_user_prefix(user_id: str) -> str:
    """The sort key prefix of a user's conflicts in their org's partition."""
    return f"{CONFLICT}{user_id}#"


def conflict(org_id: str, user_id: str, milestone_id: str) -> Key:
    """One (milestone, user) conflict, in the org's partition: one query reads an org's (sync health) or a
    user's (`conflict_user_prefix`)."""
    return {"pk": org_pk(org_id), "sk": f"{conflict_user_prefix(user_id)}{milestone_id}"}
