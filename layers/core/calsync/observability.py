"""Powertools Logger and Metrics, created once; everything imports these objects."""

import os

from aws_lambda_powertools import Logger, Metrics

SERVICE = os.getenv("POWERTOOLS_SERVICE_NAME") or "calendar-sync"

logger = Logger(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE") or "SolarNexus/CalendarSync")
