package dev.freshtoken.keycloak.telemetry;

import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.time.Duration;
import java.util.Iterator;
import java.util.Map;
import java.util.StringJoiner;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;

import com.fasterxml.jackson.databind.JsonNode;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Metrics;
import io.micrometer.core.instrument.Timer;
import org.jboss.logging.Logger;
import org.keycloak.events.Details;
import org.keycloak.events.Errors;
import org.keycloak.events.EventBuilder;
import org.keycloak.events.EventType;
import org.keycloak.models.ClientModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.UserModel;

import dev.freshtoken.keycloak.nativecore.NativeLibrary;
import dev.freshtoken.keycloak.refresh.RefreshLimiter;

/**
 * Events and metrics of token retrievals. One {@link Call} per retrieval collects what happened
 * (kind, resource, single-flight wait, the core's final answer) and, at the end, adds the event
 * details and counts the meters. Token values never reach a detail or a tag: only codes, numbers,
 * the IdP alias and configured scope strings.
 *
 * <p>Events: the broker token endpoint (V1 and V2) already records
 * {@code IDENTITY_PROVIDER_RETRIEVE_TOKEN(_ERROR)} around our provider call; the details are
 * added to that very event (its builder is reached through the current JAX-RS resource), so
 * nothing is recorded twice. Our own endpoints (obo, app-token) record their own event of the
 * same types.
 *
 * <p>Metrics: Micrometer's global registry, which Keycloak's Quarkus Micrometer feeds into
 * {@code /metrics} on the management port ({@code --metrics-enabled=true}). Tags are bounded by
 * configuration: realm, IdP alias, kind (4 values), outcome and code (closed sets), resource
 * (only scope strings an admin allowed for that IdP, else {@code -}).
 */
public final class Telemetry {

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

    /** Event detail keys (all ours start with {@code fresh_token_}). */
    static final String D_ENDPOINT = "fresh_token_endpoint";
    static final String D_KIND = "fresh_token_kind";
    static final String D_RESOURCE = "fresh_token_resource";
    static final String D_OUTCOME = "fresh_token_outcome";
    static final String D_REFRESHED = "fresh_token_refreshed";
    static final String D_UPSTREAM_MS = "fresh_token_upstream_ms";
    static final String D_ERROR = "fresh_token_error";
    static final String D_UPSTREAM_STATUS = "fresh_token_upstream_status";
    static final String D_UPSTREAM_ERROR = "fresh_token_upstream_error";
    static final String D_AADSTS = "fresh_token_aadsts";
    static final String D_WAIT = "fresh_token_wait";

    private static final Map<String, Counter> COUNTERS = new ConcurrentHashMap<>();
    private static final Map<String, Timer> TIMERS = new ConcurrentHashMap<>();
    private static final AtomicBoolean GAUGES = new AtomicBoolean();
    private static final AtomicBoolean METRICS_BROKEN = new AtomicBoolean();
    private static final AtomicBoolean EVENT_HOOK_WARNED = new AtomicBoolean();

    private Telemetry() {
    }

    /** What was asked for: the IdP's own token, a resource token, on-behalf-of, app-only. */
    public enum Kind {
        IDP("idp"), RESOURCE("resource"), OBO("obo"), APP("app");

        final String tag;

        Kind(String tag) {
            this.tag = tag;
        }
    }

    /** Registers the gauge(s) once; called at start-up (postInit) and on first use. */
    public static void registerGauges() {
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

    /** One retrieval. Not thread-safe; lives as long as one request's TokenService. */
    public static final class Call {
        private final KeycloakSession session;
        private final String alias;
        private final String endpoint;
        private Kind kind = Kind.IDP;
        private String resource;
        /** Whether the resource is one the admin allowed (only then it may be a metric tag). */
        private boolean resourceAllowed;
        private String waitOutcome;
        private ClientModel client;
        private UserModel user;

        public Call(KeycloakSession session, String alias, String endpoint) {
            this.session = session;
            this.alias = alias;
            this.endpoint = endpoint;
        }

        public void kind(Kind kind, String resource) {
            this.kind = kind;
            this.resource = resource;
        }

        public void resourceAllowed() {
            this.resourceAllowed = true;
        }

        /** A single-flight wait ended: served, failed, took_over, timeout, gone. */
        public void waited(String outcome) {
            this.waitOutcome = outcome;
        }

        public void caller(ClientModel client, UserModel user) {
            this.client = client;
            this.user = user;
        }

        /**
         * Records the retrieval: event details and meters. {@code body} is the core's final
         * answer ({@code ok} or {@code err} object) behind the outcome (null when Java answered
         * on its own); {@code errorCode} is null on success; {@code askedIdp}: this request
         * itself let the core call the IdP. Never throws.
         */
        public void finish(String errorCode, JsonNode body, boolean askedIdp) {
            try {
                Summary s = summarise(errorCode, body, askedIdp);
                event(s);
                meters(s);
            } catch (RuntimeException | LinkageError e) {
                LOG.debugf("fresh-token: telemetry failed (%s)", e.getClass().getSimpleName());
            }
        }

        private Summary summarise(String errorCode, JsonNode body, boolean askedIdp) {
            JsonNode ms = body == null ? null : body.get("upstream_ms");
            Long upstreamMs = askedIdp && ms != null && ms.canConvertToLong() ? ms.asLong() : null;
            JsonNode failure = body == null ? null : body.get("refresh_failure");
            JsonNode upstream = null;
            String failureCode = errorCode;
            String outcome;
            if (errorCode != null) {
                outcome = "error";
                upstream = body == null ? null : body.get("upstream");
            } else if ("refreshed".equals(body == null ? null : body.path("action").asText(null))) {
                outcome = upstreamMs != null ? "refreshed" : waitOutcome != null ? "waited" : "cache_hit";
            } else if (failure != null && failure.isObject() && upstreamMs != null) {
                outcome = "stale_served";
                failureCode = failure.path("code").asText("upstream_error");
                upstream = failure.get("upstream");
            } else if (waitOutcome != null) {
                outcome = "waited";
            } else {
                outcome = "cache_hit";
            }
            if (upstream != null && !upstream.isObject()) {
                upstream = null;
            }
            return new Summary(outcome, failureCode, upstreamMs, upstream);
        }

        private record Summary(String outcome, String code, Long upstreamMs, JsonNode upstream) {
        }

        // ---- events ------------------------------------------------------------------------

        private void details(EventBuilder e, Summary s) {
            e.detail(Details.IDENTITY_PROVIDER, alias);
            e.detail(D_ENDPOINT, endpoint);
            e.detail(D_KIND, kind.tag);
            if (resource != null) {
                e.detail(D_RESOURCE, clip(resource, 200));
            }
            e.detail(D_OUTCOME, s.outcome());
            e.detail(D_REFRESHED, Boolean.toString("refreshed".equals(s.outcome())));
            if (s.upstreamMs() != null) {
                e.detail(D_UPSTREAM_MS, Long.toString(s.upstreamMs()));
            }
            if (waitOutcome != null) {
                e.detail(D_WAIT, waitOutcome);
            }
            if (s.code() != null) {
                e.detail(D_ERROR, s.code());
            }
            JsonNode up = s.upstream();
            if (up != null) {
                if (up.path("status").canConvertToInt()) {
                    e.detail(D_UPSTREAM_STATUS, Integer.toString(up.path("status").asInt()));
                }
                String err = up.path("error").asText(null);
                if (err != null && err.matches("[A-Za-z0-9_.:-]{1,64}")) {
                    e.detail(D_UPSTREAM_ERROR, err);
                }
                StringJoiner codes = new StringJoiner(",");
                for (Iterator<JsonNode> it = up.path("error_codes").elements(); it.hasNext();) {
                    JsonNode c = it.next();
                    if (c.canConvertToLong()) {
                        codes.add(Long.toString(c.asLong()));
                    }
                }
                if (codes.length() > 0) {
                    e.detail(D_AADSTS, codes.toString());
                }
            }
        }

        private void event(Summary s) {
            RealmModel realm = session.getContext().getRealm();
            if (realm == null) {
                return;
            }
            boolean error = "error".equals(s.outcome());
            if (endpoint.startsWith("broker")) {
                EventBuilder stock = brokerEvent();
                if (stock == null) {
                    if (EVENT_HOOK_WARNED.compareAndSet(false, true)) {
                        LOG.warn("fresh-token: cannot reach Keycloak's IDENTITY_PROVIDER_RETRIEVE_TOKEN event on this version; "
                                + "broker token events carry no fresh-token details (metrics are unaffected)");
                    }
                    return;
                }
                details(stock, s);
                if (error) {
                    stock.detail(Details.REASON, s.code());
                    if ("broker_v2".equals(endpoint)) {
                        // V2: Keycloak records success() after our answer, whatever its status; mark
                        // that one event as the error it is (stock V1 does this itself on our exception).
                        stock.getEvent().setType(EventType.IDENTITY_PROVIDER_RETRIEVE_TOKEN_ERROR);
                        stock.getEvent().setError(Errors.IDENTITY_PROVIDER_ERROR);
                    }
                }
                return;
            }
            // Our own endpoints: Keycloak records nothing; one event of the same types.
            EventBuilder e = session.getContext().getConnection() == null ? new EventBuilder(realm, session)
                    : new EventBuilder(realm, session, session.getContext().getConnection());
            e.event(EventType.IDENTITY_PROVIDER_RETRIEVE_TOKEN);
            ClientModel c = client != null ? client : session.getContext().getClient();
            if (c != null) {
                e.client(c);
            }
            if (user != null) {
                e.user(user);
            }
            details(e, s);
            if (error) {
                e.detail(Details.REASON, s.code());
                e.error(Errors.IDENTITY_PROVIDER_ERROR);
            } else {
                e.success();
            }
        }

        // ---- metrics -----------------------------------------------------------------------

        private void meters(Summary s) {
            if (METRICS_BROKEN.get()) {
                return;
            }
            try {
                registerGauges();
                countMeters(s);
            } catch (RuntimeException | LinkageError e) {
                metricsBroken(e);
            }
        }

        private void countMeters(Summary s) {
            RealmModel realmModel = session.getContext().getRealm();
            String realm = realmModel == null ? "-" : realmModel.getName();
            String res = resource != null && resourceAllowed ? resource : "-";
            if (s.upstreamMs() != null) {
                String refresh = switch (s.outcome()) {
                    case "refreshed" -> "success";
                    case "stale_served" -> "stale_served";
                    default -> "failure";
                };
                counter(REFRESHES, "IdP token requests made by this node, by outcome and code",
                        "realm", realm, "idp", alias, "kind", kind.tag, "outcome", refresh,
                        "code", s.code() == null ? "none" : s.code()).increment();
                timer(realm, refresh).record(Duration.ofMillis(Math.max(0, s.upstreamMs())));
            }
            if (waitOutcome != null) {
                counter(WAITS, "Requests that waited for a concurrent refresh of the same user's token, by how the wait ended",
                        "realm", realm, "idp", alias, "kind", kind.tag, "outcome", waitOutcome).increment();
            }
            if ("cache_hit".equals(s.outcome())) {
                counter(CACHE_HITS, "Tokens served from the stored or cached token without asking the IdP",
                        "realm", realm, "idp", alias, "kind", kind.tag, "resource", res).increment();
            }
            if ("error".equals(s.outcome())) {
                counter(ERRORS, "Error answers to apps, by our error code",
                        "realm", realm, "idp", alias, "kind", kind.tag, "code", s.code()).increment();
            }
        }

        private Timer timer(String realm, String outcome) {
            String key = UPSTREAM + '|' + realm + '|' + alias + '|' + kind.tag + '|' + outcome;
            return TIMERS.computeIfAbsent(key, k -> Timer.builder(UPSTREAM)
                    .description("Time spent asking the IdP's token endpoint (all attempts and waits of one request)")
                    .tags("realm", realm, "idp", alias, "kind", kind.tag, "outcome", outcome)
                    .serviceLevelObjectives(LATENCY_BUCKETS)
                    .register(Metrics.globalRegistry));
        }
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

    private static String clip(String s, int max) {
        return s.length() <= max ? s : s.substring(0, max) + "…";
    }

    // ---- the stock broker endpoint's event builder -------------------------------------------

    private static final String BROKER_SERVICE = "org.keycloak.services.resources.IdentityBrokerService";
    private static volatile Method currentRequest;
    private static volatile Method endpointInstance;
    private static volatile Field eventField;
    private static volatile boolean hookUnavailable;

    /**
     * The {@link EventBuilder} of Keycloak's {@code IdentityBrokerService} serving this request
     * (its private field {@code event}, in 26.4 to 26.7), reached through RESTEasy Reactive's
     * current request; null when that is not possible.
     */
    static EventBuilder brokerEvent() {
        if (hookUnavailable) {
            return null;
        }
        try {
            if (currentRequest == null) {
                ClassLoader cl = Telemetry.class.getClassLoader();
                Class<?> crm = Class.forName("org.jboss.resteasy.reactive.server.core.CurrentRequestManager", false, cl);
                Class<?> ctx = Class.forName("org.jboss.resteasy.reactive.server.core.ResteasyReactiveRequestContext", false, cl);
                Class<?> broker = Class.forName(BROKER_SERVICE, false, cl);
                Field f = broker.getDeclaredField("event");
                if (f.getType() != EventBuilder.class) {
                    throw new NoSuchFieldException("event is not an EventBuilder");
                }
                f.setAccessible(true);
                eventField = f;
                endpointInstance = ctx.getMethod("getEndpointInstance");
                currentRequest = crm.getMethod("get");
            }
            Object ctx = currentRequest.invoke(null);
            Object instance = ctx == null ? null : endpointInstance.invoke(ctx);
            if (instance == null || !eventField.getDeclaringClass().isInstance(instance)) {
                return null;
            }
            return (EventBuilder) eventField.get(instance);
        } catch (ReflectiveOperationException | RuntimeException | LinkageError e) {
            hookUnavailable = true;
            LOG.debugf("fresh-token: broker event hook unavailable (%s)", e.getClass().getSimpleName());
            return null;
        }
    }
}
