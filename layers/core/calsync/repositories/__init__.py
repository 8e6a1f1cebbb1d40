"""The table's items, one repository per aggregate (connections, milestones and their event refs,
busy weeks, backfill runs, OAuth states, push notifications). calsync.store.Store puts them together
over one table; each also stands alone over a calsync.dynamo.Table.
"""
