"""Builds the long-lived objects once per Lambda container (constructor injection, no singletons
inside the classes). Handlers call these at module level or on first use. (Named for what it does, the
wiring of collaborators; it was `runtime`, which said nothing about it.)"""

from __future__ import annotations

from functools import cache

import boto3

from calsync.config import get_settings


@cache
def aws_client(name: str):
    return boto3.session.Session().client(name)


@cache
def store():
    from calsync.store import Store

    return Store(aws_client("dynamodb"), get_settings().table_name)


@cache
def vault():
    from calsync.vault import TokenVault

    return TokenVault(aws_client("kms"), get_settings().kms_key_id)


@cache
def publisher():
    from calsync.publisher import Publisher

    settings = get_settings()
    return Publisher(aws_client("sqs"), settings.calendar_changes_queue_url, settings.cleanup_queue_url)


@cache
def rate_limiter():
    from calsync.ratelimit import RateLimiter

    settings = get_settings()
    return RateLimiter(aws_client("dynamodb"), settings.table_name, settings.rate_limit_per_second,
                       settings.rate_limit_per_minute)


@cache
def fair_share():
    from calsync.fairshare import FairShare

    return FairShare(aws_client("dynamodb"), get_settings().table_name, rate_limiter())


@cache
def cronofy_app():
    from calsync.cronofy import CronofyApp

    settings = get_settings()
    client_secret, _ = settings.secrets()
    return CronofyApp(
        settings.cronofy_client_id,
        client_secret,
        settings.api_base_url,
        settings.app_base_url,
        timeout=settings.http_timeout_seconds,
        limiter=rate_limiter(),
        max_limiter_wait=settings.cronofy_max_wait_seconds,
    )


@cache
def connection_service():
    from calsync.backfill_start import BackfillWorkflow
    from calsync.connections import ConnectionService
    from calsync.oauth_state import StateSigner

    settings = get_settings()
    _, signing_key = settings.secrets()
    return ConnectionService(
        settings,
        store(),
        vault(),
        cronofy_app(),
        StateSigner(signing_key, settings.oauth_state_ttl_seconds),
        publisher(),
        signing_key,
        workflow=BackfillWorkflow(aws_client("stepfunctions"), settings.backfill_state_machine_arn),
    )


def reset() -> None:
    """Forget every cached object (tests and the local stack switch environments)."""
    for factory in (aws_client, store, vault, publisher, rate_limiter, fair_share, cronofy_app, connection_service,
                    sync_engine, backfill_steps, busy, notification_processor, reconciler, availability, sync_health,
                    get_settings, enterprise_connect, conflict_watch):
        factory.cache_clear()


@cache
def enterprise_connect():
    from calsync.enterprise import EnterpriseConnectService
    from calsync.enterprise_store import EnterpriseStore
    from calsync.oauth_state import StateSigner

    settings = get_settings()
    _, signing_key = settings.secrets()
    return EnterpriseConnectService(settings, EnterpriseStore(aws_client("dynamodb"), settings.table_name),
                                    connection_service(), StateSigner(signing_key, settings.oauth_state_ttl_seconds),
                                    signing_key)


@cache
def sync_engine():
    from calsync.sync import SyncEngine

    return SyncEngine(store(), connection_service())  # the connection service keeps the tokens


@cache
def backfill_steps():
    from calsync.backfill import BackfillSteps

    return BackfillSteps(store(), sync_engine(), connection_service(), publisher(), busy(),
                         conflicts=conflict_watch())


@cache
def busy():
    from calsync.busy import Busy
    from calsync.store import BusyStore

    return Busy(BusyStore(aws_client("dynamodb"), get_settings().table_name), store())


@cache
def conflict_watch():
    from calsync.conflict_watch import ConflictWatch

    return ConflictWatch(store(), busy(), publisher())


@cache
def availability():
    from calsync.availability import Availability

    return Availability(store(), busy())


@cache
def sync_health():
    from calsync.health import SyncHealth

    return SyncHealth(store(), busy())


@cache
def notification_processor():
    from calsync.notifications import NotificationProcessor

    return NotificationProcessor(store(), connection_service(), publisher(), busy(), sync_engine(),
                                 conflicts=conflict_watch())


@cache
def reconciler():
    from calsync.reconcile import Reconciler

    service = connection_service()  # the token keeper and the connection upkeep
    return Reconciler(store(), service, service, publisher(), cronofy_app(), notification_processor(),
                      get_settings().reconcile_request_budget, rate_limiter())
