"""Everything stored about one end user: export and erasure."""

from memories.user_data.core import *  # noqa: F403
from memories.user_data.core import (  # noqa: F401
    ACTOR_FORGET_USER,
    DEFAULT_BATCH_SIZE,
    EXPORT_FORMAT,
    EXPORT_FORMATS,
    EXPORT_VERSION,
    FORGET_USER_REASON,
    keyword_index_compact,
    storage_compact,
)
