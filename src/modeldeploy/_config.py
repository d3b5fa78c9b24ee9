"""Default values, in one place."""

from __future__ import annotations

#: Folder used by ``ModelRegistry()`` when no root is given.
DEFAULT_REGISTRY_ROOT = "model-registry"
#: Serialization format used by ``ModelRegistry.register`` when none is given.
DEFAULT_FORMAT = "joblib"
#: How many loaded models the in-process cache of a registry keeps.
DEFAULT_CACHE_SIZE = 16
#: Most bytes of artifacts a host's artifact cache (of a remote artifact store) keeps: 2 GiB.
DEFAULT_ARTIFACT_CACHE_LIMIT_BYTES = 2 * 1024**3
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
DEFAULT_MAX_WAIT_MS = 2.0
#: Longest model call (estimated from the calls so far) that an OnlineDeployer runs on the
#: event loop for ``apredict`` callers, in milliseconds; longer ones go to a helper thread.
#: Only verified compiled fast paths without ``timeout_ms`` ever run on the loop.
DEFAULT_INLINE_MAX_MS = 1.0
#: Consecutive failures after which an OnlineDeployer's circuit breaker opens.
DEFAULT_BREAKER_THRESHOLD = 5
#: Seconds an open circuit breaker waits before trying the failing model again.
DEFAULT_BREAKER_COOLDOWN_S = 30.0
#: Latencies kept per model version for percentiles (a ring of the most recent ones).
DEFAULT_LATENCY_WINDOW = 4096
#: Scored batches (or shadow copies) queued for a background consumer before new ones are dropped.
DEFAULT_BACKGROUND_QUEUE_SIZE = 1024
#: Longest an OnlineDeployer waits for a model's warm-up, in seconds, when it has no
#: ``timeout_ms``; a model that takes longer is refused and its call abandoned.
DEFAULT_WARMUP_TIMEOUT_S = 30.0
#: Seconds between two registry polls of ``OnlineDeployer.follow``.
DEFAULT_POLL_S = 5.0
#: Rows per chunk of ``BatchDeployer`` (bounded memory: about chunk_size x n_jobs x 2 rows live).
DEFAULT_BATCH_CHUNK_SIZE = 100_000
#: Chunks in flight per worker of ``BatchDeployer``: one being scored, one read and waiting.
DEFAULT_BATCH_IN_FLIGHT_PER_WORKER = 2
#: Rows of each scored chunk that ``BatchDeployer`` hands to its monitor (a uniform sample).
DEFAULT_BATCH_MONITOR_ROWS = 1_000
#: ``BatchDeployer.submit``: score the accumulated records once this many rows are waiting.
DEFAULT_BATCH_FLUSH_ROWS = 10_000
#: ``BatchDeployer.submit``: ... or once the oldest waiting record is this many seconds old.
DEFAULT_BATCH_FLUSH_INTERVAL_S = 60.0
#: Rows in a Monitor's count-based window.
DEFAULT_MONITOR_WINDOW = 5_000
#: Buckets a Monitor's window is split into (the window slides one bucket at a time).
DEFAULT_MONITOR_BUCKETS = 10
#: Labelled rows (or rows, for drift) a window needs before its metrics may alert.
DEFAULT_MONITOR_MIN_SAMPLES = 100
#: Predictions a Monitor remembers by id while waiting for their labels.
DEFAULT_MAX_PENDING_LABELS = 100_000
#: How long a Monitor waits for a prediction's label, in seconds (7 days).
DEFAULT_LABEL_TTL_S = 7 * 24 * 3600.0
#: Quantile bins of the drift sketch a Monitor fits from raw reference data (KS resolution).
DEFAULT_SKETCH_BINS = 200
#: Quantile bins of the PSI computed against raw reference data.
DEFAULT_PSI_BINS = 10
#: PSI above which a feature counts as drifted (0.1 is the usual "moderate" level).
DEFAULT_PSI_THRESHOLD = 0.25
#: p-value below which a KS or chi-squared test counts a feature as drifted.
DEFAULT_DRIFT_P_VALUE = 0.01
#: Seconds between two monitor snapshots a MonitorPublisher writes for the fleet view.
DEFAULT_PUBLISH_EVERY_S = 10.0
#: Points of metric history a Monitor keeps for reports and plots.
DEFAULT_MONITOR_HISTORY = 1_000
#: Most distinct class labels a Monitor tracks (confusion matrices grow with its square).
DEFAULT_MAX_CLASSES = 100
#: Reference rows a fast path is checked on when none are given (drawn from the signature).
DEFAULT_FAST_PATH_REFERENCE_ROWS = 1_000
#: Most threshold-stress rows (each split threshold and one ulp either side) a fast path is
#: checked on.
DEFAULT_FAST_PATH_STRESS_ROWS = 30_000
#: Largest |fast - model| probability (or |diff| / max(1, |value|) for regressors) accepted.
DEFAULT_FAST_PATH_ATOL = 1e-9
#: Rows a Monitor's window needs before drift may alert (PSI is noisy on small samples).
DEFAULT_MONITOR_MIN_DRIFT_SAMPLES = 1_000
#: Model versions a Monitor keeps separate windows for (the least recently seen is dropped).
DEFAULT_MONITOR_MAX_VERSIONS = 8
#: ``HybridRouter``'s default rule: requests of at most this many rows go online, bigger ones
#: to the batch path.
DEFAULT_ROUTER_MAX_ONLINE_ROWS = 1_000
#: How long a Monitor keeps a label that arrived before its prediction (seconds): a deployer
#: hands predictions to its monitor from a background thread, so a label logged right after
#: ``predict`` can overtake them.
DEFAULT_EARLY_LABEL_TTL_S = 60.0
