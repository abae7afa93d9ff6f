package dev.freshtoken.keycloak.telemetry;

import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Metrics;
import io.micrometer.core.instrument.Timer;
import org.jboss.logging.Logger;

import dev.freshtoken.keycloak.nativecore.NativeLibrary;
import dev.freshtoken.keycloak.refresh.RefreshLimiter;

/**
 * The meters of token retrievals in Micrometer's global registry (README, "Metrics"): names and
 * tags are part of the operator's dashboards and stay as they are. Never throws: a registry that
 * cannot be used switches metrics off with one warning.
 */
final class Meters {

    private static final Logger LOG = Logger.getLogger("dev.freshtoken.keycloak");

    /** Upstream latency buckets (seconds): few, so that the histogram stays cheap per series. */
    private static final Duration[] LATENCY_BUCKETS = {
        Duration.ofMillis(50), Duration.ofMillis(100), Duration.ofMillis(250), Duration.ofMillis(500),
        Duration.ofSeconds(1), Duration.ofMillis(2500), Duration.ofSeconds(5), Duration.ofSeconds(10),
        Duration.ofSeconds(20)};

    static final String REFRESHES = "fresh_token.refreshes";
    static final String UPSTREAM = "fresh_token.upstream.duration";
    static final String WAITS = "fresh_token.single_flight.waits";
    static final String CACHE_HITS = "fresh_token.cache.hits";
    static final String ERRORS = "fresh_token.errors";
    static final String NATIVE = "fresh_token.native.loaded";

    private static final Map<String, Counter> COUNTERS = new ConcurrentHashMap<>();
    private static final Map<String, Timer> TIMERS = new ConcurrentHashMap<>();
    private static final AtomicBoolean GAUGES = new AtomicBoolean();
    private static final AtomicBoolean METRICS_BROKEN = new AtomicBoolean();

    private Meters() {
    }

    /** Registers the gauge(s) once; called at start-up (postInit) and on first use. */
    static void registerGauges() {
        if (!GAUGES.compareAndSet(false, true)) {
            return;
        }
        try {
            Gauge.builder(NATIVE, () -> NativeLibrary.status().state() == NativeLibrary.State.LOADED ? 1 : 0)
                    .description("1 when the fresh-token native core is loaded on this node, else 0")
                    .register(Metrics.globalRegistry);
            Gauge.builder("fresh_token_refreshes_in_flight", RefreshLimiter::inFlight)
                    .description("Upstream refreshes this node is running now (each holds a database connection)")
                    .register(Metrics.globalRegistry);
            Gauge.builder("fresh_token_refreshes_in_flight_limit", RefreshLimiter::limit)
                    .description("The node's max-concurrent-refreshes; callers beyond it get retry_later")
                    .register(Metrics.globalRegistry);
        } catch (RuntimeException | LinkageError e) {
            metricsBroken(e);
        }
    }

    /**
     * Counts one retrieval. {@code resource}: the scope tag ({@code -} unless the admin allowed it),
     * {@code wait}: how a single-flight wait ended or null, {@code upstreamMs}: null when this
     * request did not ask the IdP.
     */
    static void count(String realm, String alias, String kind, String resource, String wait, String outcome, String code,
                      Long upstreamMs) {
        if (METRICS_BROKEN.get()) {
            return;
        }
        try {
            registerGauges();
            if (upstreamMs != null) {
                String refresh = switch (outcome) {
                    case "refreshed" -> "success";
                    case "stale_served" -> "stale_served";
                    default -> "failure";
                };
                counter(REFRESHES, "IdP token requests made by this node, by outcome and code",
                        "realm", realm, "idp", alias, "kind", kind, "outcome", refresh,
                        "code", code == null ? "none" : code).increment();
                timer(realm, alias, kind, refresh).record(Duration.ofMillis(Math.max(0, upstreamMs)));
            }
            if (wait != null) {
                counter(WAITS, "Requests that waited for a concurrent refresh of the same user's token, by how the wait ended",
                        "realm", realm, "idp", alias, "kind", kind, "outcome", wait).increment();
            }
            if ("cache_hit".equals(outcome)) {
                counter(CACHE_HITS, "Tokens served from the stored or cached token without asking the IdP",
                        "realm", realm, "idp", alias, "kind", kind, "resource", resource).increment();
            }
            if ("error".equals(outcome)) {
                counter(ERRORS, "Error answers to apps, by our error code",
                        "realm", realm, "idp", alias, "kind", kind, "code", code).increment();
            }
        } catch (RuntimeException | LinkageError e) {
            metricsBroken(e);
        }
    }

    private static Timer timer(String realm, String alias, String kind, String outcome) {
        String key = UPSTREAM + '|' + realm + '|' + alias + '|' + kind + '|' + outcome;
        return TIMERS.computeIfAbsent(key, k -> Timer.builder(UPSTREAM)
                .description("Time spent asking the IdP's token endpoint (all attempts and waits of one request)")
                .tags("realm", realm, "idp", alias, "kind", kind, "outcome", outcome)
                .serviceLevelObjectives(LATENCY_BUCKETS)
                .register(Metrics.globalRegistry));
    }

    private static Counter counter(String name, String description, String... tags) {
        StringBuilder key = new StringBuilder(name);
        for (String t : tags) {
            key.append('|').append(t);
        }
        return COUNTERS.computeIfAbsent(key.toString(),
                k -> Counter.builder(name).description(description).tags(tags).register(Metrics.globalRegistry));
    }

    private static void metricsBroken(Throwable e) {
        if (METRICS_BROKEN.compareAndSet(false, true)) {
            LOG.warnf("fresh-token: metrics disabled, Micrometer is not usable here (%s)", e.getClass().getSimpleName());
        }
    }

    /** For tests and diagnostics: the registry meters go to. */
    static MeterRegistry registry() {
        return Metrics.globalRegistry;
    }
}
