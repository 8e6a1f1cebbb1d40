"""Cronofy webhook intake (placeholder until the intake lands): answers 202 and does nothing."""


def lambda_handler(event: dict, context) -> dict:
    return {"statusCode": 202, "body": ""}
