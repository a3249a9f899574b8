"""A service creates, beside the platform's topics, those it reads under names of its own (a second assessment
instance's intake topic) and their dead-letter topics: on a cluster that does not create topics on first use, its
consumer waited for a topic nobody made, and its first dead letter could not be sent."""
from __future__ import annotations

import uuid

from confluent_kafka.admin import AdminClient

from tests.support.services import running_service, wait_for


def test_a_service_creates_the_intake_topic_it_was_given_and_its_dead_letter_topic(db_url, kafka_bootstrap):
    topic = f"test.intake.{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    try:
        with running_service("assessment", db_url, kafka_bootstrap, intake_topic=topic):
            wait_for(lambda: {topic, f"{topic}.dlq"} <= set(admin.list_topics(timeout=10).topics), timeout=60,
                     what="the intake topic and its dead-letter topic")
    finally:
        for fut in admin.delete_topics([topic, f"{topic}.dlq"], operation_timeout=30).values():
            try:
                fut.result(timeout=30)
            except Exception:  # noqa: BLE001 - never created (the failure above says why)
                pass
