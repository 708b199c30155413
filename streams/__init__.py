"""The streaming mode: faust-streaming workers on Kafka (issue: streaming core)."""
