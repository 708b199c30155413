"""The streaming mode of the API: reads from the Redis the workers publish, events and rules
to Kafka. `StreamingRuntime` connects it all and keeps retrying while Kafka is away."""

from .health import StreamingHealth
from .kafka_ingest import KafkaIngest
from .kafka_link import KafkaLink
from .redis_read_model import ChannelCatalog, RedisReadModel
from .rules_follower import RulesFollower
from .runtime import StreamingRuntime
from .topics_admin import (
    TopicsMismatch,
    TopicsNotCreated,
    TopicsUnderReplicated,
    ensure_topics,
    wanted_topics,
)

__all__ = [
    "ChannelCatalog",
    "KafkaIngest",
    "KafkaLink",
    "RedisReadModel",
    "RulesFollower",
    "StreamingHealth",
    "StreamingRuntime",
    "TopicsMismatch",
    "TopicsNotCreated",
    "TopicsUnderReplicated",
    "ensure_topics",
    "wanted_topics",
]
