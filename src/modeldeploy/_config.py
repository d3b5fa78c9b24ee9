"""Default values, in one place."""

from __future__ import annotations

#: Folder used by ``ModelRegistry()`` when no root is given.
DEFAULT_REGISTRY_ROOT = "model-registry"
#: Serialization format used by ``ModelRegistry.register`` when none is given.
DEFAULT_FORMAT = "joblib"
#: How many loaded models the in-process cache of a registry keeps.
DEFAULT_CACHE_SIZE = 16
#: SQLite busy timeout: how long a writer waits for another process's lock, in seconds.
DEFAULT_BUSY_TIMEOUT_S = 30.0
#: Number of quantile bins in a numeric feature's reference profile.
DEFAULT_PROFILE_BINS = 20
#: Most frequent categories kept in a categorical feature's reference profile.
DEFAULT_PROFILE_TOP_CATEGORIES = 50
#: Rows of the registration sample kept to profile a signature (a uniform subsample).
DEFAULT_PROFILE_MAX_ROWS = 100_000
#: Reference rows kept with a signature (a few, for warm-up and parity checks; never the data).
DEFAULT_SIGNATURE_EXAMPLE_ROWS = 5
#: The alias that ``promote`` and ``rollback`` move when none is named.
DEFAULT_ALIAS = "production"
#: Most rows an OnlineDeployer coalesces into one model call.
DEFAULT_MAX_BATCH_SIZE = 64
#: Longest an OnlineDeployer request waits for others to share its model call, in milliseconds.
DEFAULT_MAX_WAIT_MS = 1.0
#: Consecutive failures after which an OnlineDeployer's circuit breaker opens.
DEFAULT_BREAKER_THRESHOLD = 5
#: Seconds an open circuit breaker waits before trying the failing model again.
DEFAULT_BREAKER_COOLDOWN_S = 30.0
#: Latencies kept per model version for percentiles (a ring of the most recent ones).
DEFAULT_LATENCY_WINDOW = 4096
#: Scored batches (or shadow copies) queued for a background consumer before new ones are dropped.
DEFAULT_BACKGROUND_QUEUE_SIZE = 1024
#: Seconds between two registry polls of ``OnlineDeployer.follow``.
DEFAULT_POLL_S = 5.0
