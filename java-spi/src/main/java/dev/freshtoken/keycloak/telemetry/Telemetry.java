package dev.freshtoken.keycloak.telemetry;

import java.util.Iterator;
import java.util.StringJoiner;
import java.util.concurrent.atomic.AtomicBoolean;

import com.fasterxml.jackson.databind.JsonNode;
import org.jboss.logging.Logger;
import org.keycloak.events.Details;
import org.keycloak.events.Errors;
import org.keycloak.events.EventBuilder;
import org.keycloak.events.EventType;
import org.keycloak.models.ClientModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.UserModel;

import dev.freshtoken.keycloak.nativecore.CoreAnswer;

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
        Meters.registerGauges();
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
         * Records the retrieval: event details and meters. {@code answer} is the core's final
         * answer behind the outcome (null when Java answered on its own); {@code errorCode} is
         * null on success; {@code askedIdp}: this request itself let the core call the IdP. Never throws.
         */
        public void finish(String errorCode, CoreAnswer answer, boolean askedIdp) {
            try {
                Summary s = summarise(errorCode, answer, askedIdp);
                event(s);
                meters(s);
            } catch (RuntimeException | LinkageError e) {
                LOG.debugf("fresh-token: telemetry failed (%s)", e.getClass().getSimpleName());
            }
        }

        private Summary summarise(String errorCode, CoreAnswer answer, boolean askedIdp) {
            Long ms = answer == null ? null : answer.upstreamMs();
            Long upstreamMs = askedIdp ? ms : null;
            CoreAnswer.Failure failure = answer == null ? null : answer.refreshFailure();
            JsonNode upstream = null;
            String failureCode = errorCode;
            String outcome;
            if (errorCode != null) {
                outcome = "error";
                upstream = answer == null ? null : answer.upstream();
            } else if ("refreshed".equals(answer == null ? null : answer.action())) {
                outcome = upstreamMs != null ? "refreshed" : waitOutcome != null ? "waited" : "cache_hit";
            } else if (failure != null && upstreamMs != null) {
                outcome = "stale_served";
                failureCode = failure.code();
                upstream = failure.upstream();
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
                EventBuilder stock = BrokerEventHook.current();
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

        private void meters(Summary s) {
            RealmModel realmModel = session.getContext().getRealm();
            Meters.count(realmModel == null ? "-" : realmModel.getName(), alias, kind.tag,
                    resource != null && resourceAllowed ? resource : "-", waitOutcome, s.outcome(), s.code(), s.upstreamMs());
        }
    }

    private static String clip(String s, int max) {
        return s.length() <= max ? s : s.substring(0, max) + "…";
    }
}
