"""Powertools Logger and Metrics, created once; everything imports these objects."""

from aws_lambda_powertools import Logger, Metrics

logger = Logger()
metrics = Metrics()
