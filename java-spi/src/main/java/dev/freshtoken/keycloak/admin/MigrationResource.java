package dev.freshtoken.keycloak.admin;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import jakarta.persistence.EntityManager;
import jakarta.ws.rs.GET;
import jakarta.ws.rs.POST;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.PathParam;
import jakarta.ws.rs.QueryParam;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.jboss.logging.Logger;
import org.keycloak.broker.oidc.OIDCIdentityProviderConfig;
import org.keycloak.broker.provider.IdentityProviderMapper;
import org.keycloak.events.admin.OperationType;
import org.keycloak.events.admin.ResourceType;
import org.keycloak.models.IdentityProviderMapperModel;
import org.keycloak.models.IdentityProviderModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.provider.ProviderFactory;
import org.keycloak.services.resources.admin.AdminEventBuilder;
import org.keycloak.services.resources.admin.fgap.AdminPermissionEvaluator;

import dev.freshtoken.keycloak.compat.Compat;
import dev.freshtoken.keycloak.idp.AbstractFreshTokenFactory;
import dev.freshtoken.keycloak.idp.EntraConfig;
import dev.freshtoken.keycloak.idp.FreshTokenConfig;
import dev.freshtoken.keycloak.nativecore.ErrorCode;
import dev.freshtoken.keycloak.nativecore.ErrorReply;
import dev.freshtoken.keycloak.secrets.IdpSecrets;
import dev.freshtoken.keycloak.storage.JpaAccess;

/**
 * {@code /admin/realms/{realm}/fresh-token-migration/{alias}?to=entra-oidc|fresh-oidc|oidc}: changes
 * the type of an existing identity provider in place.
 * <ul>
 * <li>{@code GET} (or {@code POST ?dryRun=true}): the plan, nothing changed;</li>
 * <li>{@code POST}: applies it in the request's transaction: the IdP row's provider id (through
 * Keycloak's JPA entity) and its translated config (through Keycloak's IdP store, which
 * invalidates the IdP in the realm cache on every node); an admin event is recorded.</li>
 * </ul>
 * Everything keyed by the alias stays as it is: users' links and their stored tokens, mappers,
 * the redirect URI registered at the IdP; so do the internal id, client credentials, display
 * name and login flows. The plan needs view-identity-providers (or manage-identity-providers),
 * the move manage-identity-providers; manage-realm alone gets 403.
 */
public class MigrationResource {

    private static final Logger LOG = Logger.getLogger("dev.freshtoken.migration");
    private static final ObjectMapper JSON = new ObjectMapper();

    private final KeycloakSession session;
    private final RealmModel realm;
    private final AdminPermissionEvaluator auth;
    private final AdminEventBuilder adminEvent;

    public MigrationResource(KeycloakSession session, RealmModel realm, AdminPermissionEvaluator auth, AdminEventBuilder adminEvent) {
        this.session = session;
        this.realm = realm;
        this.auth = auth;
        this.adminEvent = adminEvent;
    }

    @GET
    @Path("{alias}")
    @jakarta.ws.rs.Produces(MediaType.APPLICATION_JSON)
    public Response plan(@PathParam("alias") String alias, @QueryParam("to") String to) {
        return run(alias, to, false);
    }

    @POST
    @Path("{alias}")
    @jakarta.ws.rs.Produces(MediaType.APPLICATION_JSON)
    public Response migrate(@PathParam("alias") String alias, @QueryParam("to") String to,
                            @QueryParam("dryRun") String dryRun) {
        return run(alias, to, !Boolean.parseBoolean(dryRun));
    }

    private Response run(String alias, String to, boolean apply) {
        // Keycloak's own permissions for identity providers (as its IdentityProvidersResource):
        // reading the plan needs view-identity-providers, changing the IdP manage-identity-providers.
        // manage-realm alone is not enough.
        if (apply) {
            auth.realm().requireManageIdentityProviders();
        } else {
            auth.realm().requireViewIdentityProviders();
        }
        try {
            return Response.ok(execute(alias, to, apply)).type(MediaType.APPLICATION_JSON_TYPE).build();
        } catch (MigrationPlanner.Refused r) {
            return ErrorReply.of(r.error, r.getMessage());
        }
    }

    private Map<String, Object> execute(String alias, String to, boolean apply) {
        IdentityProviderModel current = session.identityProviders().getByAlias(alias);
        if (current == null) {
            throw new MigrationPlanner.Refused(ErrorCode.NOT_FOUND, "no identity provider with this alias in the realm");
        }
        String from = current.getProviderId();
        String target = MigrationPlanner.target(from, to, current.getConfig());
        MigrationPlanner.Translation tr = MigrationPlanner.translate(from, target, current.getConfig());

        IdentityProviderModel base = new IdentityProviderModel(current);
        base.setProviderId(target);
        base.setConfig(tr.config);
        IdentityProviderModel next = switch (target) {
            case MigrationPlanner.ENTRA -> new EntraConfig(base);
            case MigrationPlanner.FRESH -> new FreshTokenConfig(base);
            default -> new OIDCIdentityProviderConfig(base);
        };
        try {
            if (apply) {
                next.validate(realm); // our types: creation defaults (store tokens on), Entra endpoints from the tenant
            } else {
                IdpSecrets.withoutWrites(() -> next.validate(realm)); // the plan writes nothing
            }
        } catch (IllegalArgumentException e) {
            throw new MigrationPlanner.Refused(ErrorCode.INVALID_CONFIG, "the translated settings are not valid for "
                    + target + ": " + e.getMessage());
        }

        EntityManager em = JpaAccess.entityManager(session);
        Map<String, Object> links = linkStats(em, alias);
        List<String> blockers = new ArrayList<>();
        long unreadable = (Long) links.get("notReadableByStock");
        if (target.equals(MigrationPlanner.OIDC) && unreadable > 0) {
            blockers.add(unreadable + " stored token(s) are not in a format Keycloak's own types read (encrypted?): "
                    + "Keycloak would hand them to apps as they are. Decrypt them first.");
        }

        Map<String, Object> plan = new LinkedHashMap<>();
        plan.put("realm", realm.getName());
        plan.put("alias", alias);
        plan.put("internalId", current.getInternalId());
        plan.put("from", from);
        plan.put("to", target);
        plan.put("dryRun", !apply);
        Map<String, Object> store = new LinkedHashMap<>();
        store.put("from", Compat.isStoreToken(current));
        store.put("to", Compat.isStoreToken(next));
        plan.put("storeToken", store);
        plan.put("config", MigrationPlanner.diff(current.getConfig(), next.getConfig()));
        Map<String, Object> kept = new LinkedHashMap<>();
        kept.put("displayName", current.getDisplayName());
        kept.put("clientId", current.getConfig().get("clientId"));
        kept.put("firstBrokerLoginFlowId", current.getFirstBrokerLoginFlowId());
        kept.put("postBrokerLoginFlowId", current.getPostBrokerLoginFlowId());
        kept.put("redirectUri", session.getContext().getUri().getBaseUriBuilder()
                .path("realms").path(realm.getName()).path("broker").path(alias).path("endpoint").build().toString());
        plan.put("kept", kept);
        plan.put("links", links);
        plan.put("mappers", mappers(alias, target, tr.warnings));
        plan.put("notes", tr.notes);
        plan.put("warnings", tr.warnings);
        plan.put("blockers", blockers);

        if (!apply) {
            plan.put("applied", false);
            return plan;
        }
        if (!blockers.isEmpty()) {
            throw new MigrationPlanner.Refused(ErrorCode.BLOCKED, String.join(" ", blockers));
        }
        // One transaction (the request's): the entity's provider id and Keycloak's own update of the
        // IdP (config, store tokens) are flushed together; the cache layer registers the IdP's
        // invalidation (by id and alias, cluster-wide) for the commit.
        JpaAccess.setProviderId(em, current.getInternalId(), target);
        if (!AbstractFreshTokenFactory.PROVIDER_IDS.contains(target)) {
            IdpSecrets.forget(realm, next); // our secret store is not left behind for a stock type
        }
        session.identityProviders().update(next);
        plan.put("applied", true);
        adminEvent.operation(OperationType.UPDATE).resource(ResourceType.IDENTITY_PROVIDER)
                .resourcePath("identity-provider", "instances", alias).representation(plan).success();
        LOG.infof("identity provider %s of realm %s moved from %s to %s (%s links)", alias, realm.getName(), from,
                target, links.get("total"));
        return plan;
    }

    /** Counts of links and stored tokens; token values are only classified, never kept or logged. */
    private Map<String, Object> linkStats(EntityManager em, String alias) {
        long total = 0;
        long withToken = 0;
        long refreshable = 0;
        long unreadable = 0;
        try (Stream<String> tokens = JpaAccess.storedTokens(em, realm.getId(), alias)) {
            for (String t : (Iterable<String>) tokens::iterator) {
                total++;
                if (t == null || t.isBlank()) {
                    continue;
                }
                withToken++;
                switch (classify(t)) {
                    case REFRESHABLE -> refreshable++;
                    case UNREADABLE -> unreadable++;
                    default -> { }
                }
            }
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("total", total);
        out.put("withToken", withToken);
        out.put("withRefreshToken", refreshable);
        out.put("notReadableByStock", unreadable);
        return out;
    }

    enum Kind { REFRESHABLE, NO_REFRESH_TOKEN, UNREADABLE }

    /** Keycloak's formats: a JSON object, or form-encoded (access_token=...&...). */
    static Kind classify(String stored) {
        String s = stored.trim();
        if (s.startsWith("{")) {
            try {
                JsonNode n = JSON.readTree(s);
                if (n == null || !n.isObject()) {
                    return Kind.UNREADABLE;
                }
                JsonNode rt = n.get("refresh_token");
                return rt != null && rt.isTextual() && !rt.asText().isBlank() ? Kind.REFRESHABLE : Kind.NO_REFRESH_TOKEN;
            } catch (java.io.IOException e) {
                return Kind.UNREADABLE;
            }
        }
        if (s.startsWith("access_token=") || s.contains("&access_token=")) {
            for (String pair : s.split("&")) {
                if (pair.startsWith("refresh_token=") && pair.length() > "refresh_token=".length()) {
                    return Kind.REFRESHABLE;
                }
            }
            return Kind.NO_REFRESH_TOKEN;
        }
        return Kind.UNREADABLE;
    }

    private List<Map<String, Object>> mappers(String alias, String target, List<String> warnings) {
        List<Map<String, Object>> out = new ArrayList<>();
        for (IdentityProviderMapperModel m : session.identityProviders().getMappersByAliasStream(alias)
                .collect(Collectors.toList())) {
            ProviderFactory<?> f = session.getKeycloakSessionFactory()
                    .getProviderFactory(org.keycloak.broker.provider.IdentityProviderMapper.class, m.getIdentityProviderMapper());
            boolean supported = f instanceof IdentityProviderMapper mapper
                    && supports(target, Arrays.asList(mapper.getCompatibleProviders()));
            Map<String, Object> e = new LinkedHashMap<>();
            e.put("id", m.getId());
            e.put("name", m.getName());
            e.put("type", m.getIdentityProviderMapper());
            e.put("supported", supported);
            out.add(e);
            if (!supported) {
                warnings.add("mapper '" + m.getName() + "' (" + m.getIdentityProviderMapper() + ") is written for other "
                        + "IdP types: it is kept and still runs at sign-in, but may find nothing to map "
                        + "(e.g. Graph /me fields of the microsoft type); replace it with an OIDC claim mapper");
            }
        }
        return out;
    }

    /** The rule of {@link FreshTokenIdentityProvider#isMapperSupported} (our types) and Keycloak's (oidc). */
    static boolean supports(String target, List<String> compatible) {
        if (compatible.contains(IdentityProviderMapper.ANY_PROVIDER) || compatible.contains(target)) {
            return true;
        }
        return !target.equals(MigrationPlanner.OIDC) && MigrationPlanner.OIDC_MAPPER_TYPES.stream()
                .anyMatch(compatible::contains);
    }
}
