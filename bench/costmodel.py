"""Dollars per 1,000 connected users per month, from the operations bench/week.py counted, and the
ceiling one Cronofy application sets.

AWS list prices, us-east-1, on-demand, no free tier, as published in 2025 (DynamoDB after the
November 2024 on-demand price cut). Check https://aws.amazon.com/pricing before budgeting.
"""

from __future__ import annotations

PRICES_AS_OF = "2025 list prices (DynamoDB on-demand after the Nov 2024 cut), us-east-1, no free tier"
PRICES = {
    "lambda_request": 0.20 / 1e6,  # per request
    "lambda_gb_second_arm64": 0.0000133334,  # per GB-s (first 7.5 billion GB-s a month)
    "dynamodb_wru": 0.625 / 1e6,  # per write request unit, on-demand
    "dynamodb_rru": 0.125 / 1e6,  # per read request unit, on-demand
    "sqs_request": 0.40 / 1e6,  # standard queue, per 64 KB request
    "sfn_transition": 0.025 / 1e3,  # standard workflows, per state transition
    "apigw_http_request": 1.00 / 1e6,  # HTTP API, first 300 million a month, per 512 KB request
    "kms_request": 0.03 / 1e4,  # symmetric Encrypt/Decrypt
    "kms_key_month": 1.00,
    "secrets_request": 0.05 / 1e4,
    "secret_month": 0.40,
}

# What the local run cannot see and the model assumes instead (billed duration in AWS).
LATENCY = {"cronofy_request_s": 0.15, "aws_request_s": 0.008}
# Lambda's SQS event source mapping long-polls each queue while idle (about 5 pollers, 20 s polls).
IDLE_POLLS_PER_QUEUE_MONTH = 5 * 3 * 60 * 24 * 30.44
DAYS_PER_MONTH = 30.44


def monthly(counts: dict, users: int, days: float, memory_mb: dict[str, int], queues_polled: int) -> dict:
    """`counts` is one phase of the week (see week.py `phase_counts`): scaled to 1,000 users and a month."""
    scale = (1000 / users) * (DAYS_PER_MONTH / days)
    lines = {}
    invocations = counts["invocations"]
    seconds = counts["billed_seconds"]
    gb_s = sum(seconds.get(f, 0.0) * memory_mb[f] / 1024 for f in seconds)
    lines["Lambda requests"] = (sum(invocations.values()) * scale, PRICES["lambda_request"])
    lines["Lambda GB-seconds (arm64)"] = (gb_s * scale, PRICES["lambda_gb_second_arm64"])
    lines["DynamoDB write request units"] = (counts["wru"] * scale, PRICES["dynamodb_wru"])
    lines["DynamoDB read request units"] = (counts["rru"] * scale, PRICES["dynamodb_rru"])
    lines["SQS requests"] = (counts["sqs_requests"] * scale, PRICES["sqs_request"])
    lines["Step Functions transitions"] = (counts["sfn_transitions"] * scale, PRICES["sfn_transition"])
    lines["API Gateway HTTP API requests"] = (counts["api_requests"] * scale, PRICES["apigw_http_request"])
    lines["KMS requests"] = (counts["kms_requests"] * scale, PRICES["kms_request"])
    per_1000 = {name: {"quantity": round(q, 1), "usd": round(q * price, 4)} for name, (q, price) in lines.items()}
    total = sum(v["usd"] for v in per_1000.values())
    fixed = {
        "KMS key": PRICES["kms_key_month"],
        "Secrets Manager secret": PRICES["secret_month"],
        "Secrets Manager reads at container starts (assumed 10,000 a month)": round(
            10_000 * PRICES["secrets_request"], 2),
        "SQS idle polling by Lambda (event source mappings)": round(
            queues_polled * IDLE_POLLS_PER_QUEUE_MONTH * PRICES["sqs_request"], 2),
    }
    return {"per_1000_users_month": per_1000, "usd_per_1000_users_month": round(total, 2),
            "usd_per_user_month": round(total / 1000, 5), "fixed_usd_month": fixed, "scale": scale}


def cronofy_ceiling(requests_per_change: float, requests_per_user_day: float, limit_per_minute: int = 500,
                    busy_hours_per_day: float = 8, peak_factor: float = 3.0) -> dict:
    """How far one Cronofy application (500 requests/minute, all users together) carries us."""
    changes_per_minute = limit_per_minute / requests_per_change if requests_per_change else float("inf")
    # A working day's requests spread over the busy hours, with peaks `peak_factor` above that average.
    per_user_minute_at_peak = requests_per_user_day / (busy_hours_per_day * 60) * peak_factor
    users = limit_per_minute / per_user_minute_at_peak if per_user_minute_at_peak else float("inf")
    return {"limit_per_minute": limit_per_minute, "changes_per_minute": round(changes_per_minute),
            "users_at_peak": int(users), "assumptions": {"busy_hours_per_day": busy_hours_per_day,
                                                         "peak_to_average": peak_factor}}
