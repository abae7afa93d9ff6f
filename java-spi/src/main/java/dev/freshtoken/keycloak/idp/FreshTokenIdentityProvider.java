package dev.freshtoken.keycloak.idp;

import jakarta.ws.rs.WebApplicationException;
import jakarta.ws.rs.core.Response;
import jakarta.ws.rs.core.UriBuilder;
import jakarta.ws.rs.core.UriInfo;

import org.keycloak.broker.oidc.OIDCIdentityProvider;
import org.keycloak.broker.provider.AuthenticationRequest;
import org.keycloak.broker.provider.BrokeredIdentityContext;
import org.keycloak.sessions.AuthenticationSessionModel;
import org.keycloak.events.EventBuilder;
import org.keycloak.models.ClientModel;
import org.keycloak.models.FederatedIdentityModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.UserModel;
import org.keycloak.models.UserSessionModel;

import dev.freshtoken.keycloak.admin.MigrationPlanner;
import dev.freshtoken.keycloak.refresh.TokenService;
import dev.freshtoken.keycloak.storage.Storage;

/**
 * An OIDC identity provider whose stored token is kept fresh by the Rust core. Only Keycloak
 * plumbing lives here; {@link TokenService} does the work.
 */
public class FreshTokenIdentityProvider extends OIDCIdentityProvider {

    private final FreshTokenConfig freshConfig;

    public FreshTokenIdentityProvider(KeycloakSession session, FreshTokenConfig config) {
        super(session, config);
        this.freshConfig = config;
    }

    public FreshTokenConfig freshConfig() {
        return freshConfig;
    }

    /**
     * Keycloak lists for an IdP only mappers naming its provider id (admin console, mapper-types);
     * ours are OIDC IdPs, so mappers for {@code oidc}/{@code keycloak-oidc} apply as well.
     */
    @Override
    public boolean isMapperSupported(org.keycloak.broker.provider.IdentityProviderMapper mapper) {
        return super.isMapperSupported(mapper)
                || java.util.Arrays.stream(mapper.getCompatibleProviders()).anyMatch(MigrationPlanner.OIDC_MAPPER_TYPES::contains);
    }

    /** Adds offline_access (unless switched off) so that the IdP issues a refresh token. */
    @Override
    protected UriBuilder createAuthorizationUrl(AuthenticationRequest request) {
        UriBuilder b = super.createAuthorizationUrl(request);
        b.replaceQueryParam(OAUTH2_PARAMETER_SCOPE, freshConfig.effectiveLoginScope());
        return b;
    }

    /**
     * Keeps our access and refresh tokens out of user-session notes (persisted in plaintext with
     * persistent sessions, and never kept current after a refresh): the stored row is the one
     * source of truth. Only the id_token is kept, for logout ({@code id_token_hint}).
     */
    @Override
    public void authenticationFinished(AuthenticationSessionModel authSession, BrokeredIdentityContext context) {
        Object response = context.getContextData().get(FEDERATED_ACCESS_TOKEN_RESPONSE);
        if (response instanceof org.keycloak.representations.AccessTokenResponse r && r.getIdToken() != null) {
            authSession.setUserSessionNote(FEDERATED_ID_TOKEN, r.getIdToken());
        }
    }

    /**
     * Multi-tenant Entra apps (tenant common/organizations): Keycloak cannot pin one issuer, so
     * each ID token's issuer must be the one Entra forms for its own {@code tid}, and the tenant
     * must be on the IdP's allow-list (when one is set).
     */
    @Override
    public BrokeredIdentityContext getFederatedIdentity(String response) {
        BrokeredIdentityContext context = super.getFederatedIdentity(response);
        // An IdP moved over from Keycloak's microsoft type: its users were linked by their Entra object
        // ID; Keycloak finds them by this legacy ID and moves the link to 'sub' (IdentityBrokerService).
        if (MigrationPlanner.MICROSOFT.equals(getConfig().getConfig().get(MigrationPlanner.MIGRATED_FROM))
                && context.getContextData().get(VALIDATED_ID_TOKEN) instanceof org.keycloak.representations.JsonWebToken t
                && t.getOtherClaims().get("oid") instanceof String oid && !oid.isBlank()) {
            context.setLegacyId(oid);
        }
        if (freshConfig instanceof EntraConfig entra && entra.isMultiTenant()) {
            Object token = context.getContextData().get(VALIDATED_ID_TOKEN);
            if (!(token instanceof org.keycloak.representations.JsonWebToken idToken)) {
                throw new org.keycloak.broker.provider.IdentityBrokerException("No validated ID token to check the tenant of");
            }
            Object tid = idToken.getOtherClaims().get("tid");
            if (!(tid instanceof String t) || t.isBlank() || !entra.issuerFor(t).equals(idToken.getIssuer())) {
                throw new org.keycloak.broker.provider.IdentityBrokerException("ID token issuer does not match its tenant");
            }
            if (!entra.tenantAllowed(t)) {
                throw new org.keycloak.broker.provider.IdentityBrokerException("Tenant " + t + " is not allowed to sign in");
            }
        }
        return context;
    }

    /**
     * Every path of Keycloak that accepts a token signed by this IdP checks its signature here:
     * the login's ID token (validateToken), external-to-internal token exchange
     * ({@code subject_issuer=<alias>}: validateJwt, and JWT access tokens on the userinfo path),
     * on 26.4 federated client authentication (client assertions). A multi-tenant Entra IdP
     * (tenant common/organizations) has no issuer Keycloak could compare, so any Entra tenant's
     * token would pass: the tenant check of {@link #getFederatedIdentity} is applied here as well.
     */
    @Override
    protected boolean verify(org.keycloak.jose.jws.JWSInput jws) {
        return super.verify(jws) && tenantAccepted(jws);
    }

    /**
     * From 26.5 the client-assertion path (FederatedJWTClientAuthenticator) and the JWT
     * authorization grant call this directly, not {@link #verify}. Absent (never called) on 26.4.
     */
    @Override
    protected boolean verifySignature(org.keycloak.jose.jws.JWSInput jws) {
        return super.verifySignature(jws) && tenantAccepted(jws);
    }

    /**
     * For a multi-tenant Entra IdP: the token's {@code tid} must be on the allow-list and its
     * issuer the one Entra forms for that tenant. Logs why a token is refused (tenant ID and
     * IdP only, never the token); other IdPs accept every token here.
     */
    boolean tenantAccepted(org.keycloak.jose.jws.JWSInput jws) {
        if (!(freshConfig instanceof EntraConfig entra) || !entra.isMultiTenant()) {
            return true;
        }
        String reason = entra.tenantRefusal(jws.getContent());
        if (reason != null) {
            org.jboss.logging.Logger.getLogger("dev.freshtoken.keycloak").warnf(
                    "fresh-token: IdP '%s': a token was refused: %s", getConfig().getAlias(), reason);
            return false;
        }
        return true;
    }

    /**
     * Encryption at rest at login: Keycloak calls this before it builds the federated-identity
     * row from {@code context.getToken()} (and before the first-broker-login flow serialises the
     * context), so the token is sealed before anything is written (IdentityBrokerService#authenticated,
     * same order in 26.4 to 26.7). With keys configured and the token not sealable, the login fails
     * rather than storing the token plain. A login answer without refresh token keeps the row's
     * previous one, as stock Keycloak does with plain rows. The value is bound to the realm and the
     * Keycloak user; at a first login the user does not exist yet: it is bound to the realm, alias
     * and subject only and sealed again with the user as soon as Keycloak has created or linked it
     * ({@link #importNewUser}, {@link #updateBrokeredUser}).
     */
    @Override
    public void preprocessFederatedIdentity(KeycloakSession session, org.keycloak.models.RealmModel realm, BrokeredIdentityContext context) {
        super.preprocessFederatedIdentity(session, realm, context);
        String token = context.getToken();
        if (!Storage.configured() || token == null || token.isEmpty()) {
            return;
        }
        String alias = getConfig().getAlias();
        try {
            UserModel user = linkedUser(session, realm, alias, context);
            FederatedIdentityModel fi = user == null ? null : session.users().getFederatedIdentity(realm, user, alias);
            context.setToken(Storage.seal(realm.getId(), user == null ? "" : user.getId(), alias, context.getId(), token,
                    fi == null ? null : fi.getToken()).value());
        } catch (Storage.StorageException e) {
            context.setToken(null);
            org.jboss.logging.Logger.getLogger("dev.freshtoken.keycloak").errorf(
                    "fresh-token: login through '%s' refused: the token cannot be stored encrypted (%s): %s", alias, e.code(), e.getMessage());
            throw new org.keycloak.broker.provider.IdentityBrokerException("fresh-token: the token cannot be stored encrypted (" + e.code() + ")");
        }
    }

    private static UserModel linkedUser(KeycloakSession session, org.keycloak.models.RealmModel realm, String alias, BrokeredIdentityContext context) {
        try {
            return session.users().getUserByFederatedIdentity(realm, new FederatedIdentityModel(alias, context.getId(), context.getUsername()));
        } catch (RuntimeException e) {
            return null;
        }
    }

    /** First login, new user: the row was just added with a value not yet bound to the user. */
    @Override
    public void importNewUser(KeycloakSession session, org.keycloak.models.RealmModel realm, UserModel user, BrokeredIdentityContext context) {
        super.importNewUser(session, realm, user, context);
        bindToUser(session, realm, user);
    }

    /** Every login of a linked user (first login linking an existing account included). */
    @Override
    public void updateBrokeredUser(KeycloakSession session, org.keycloak.models.RealmModel realm, UserModel user, BrokeredIdentityContext context) {
        super.updateBrokeredUser(session, realm, user, context);
        bindToUser(session, realm, user);
    }

    /**
     * Seals the row's value again when it is not bound to the Keycloak user yet (first login) or is
     * in an older format or under an older key; a value already bound under the first key is left alone.
     */
    private void bindToUser(KeycloakSession session, org.keycloak.models.RealmModel realm, UserModel user) {
        if (!Storage.configured() || user == null) {
            return;
        }
        String alias = getConfig().getAlias();
        FederatedIdentityModel fi = session.users().getFederatedIdentity(realm, user, alias);
        if (fi == null || !Storage.isSealed(fi.getToken())) {
            return;
        }
        try {
            Storage.Converted c = Storage.seal(realm.getId(), user.getId(), alias, fi.getUserId(), fi.getToken(), null);
            if (c.changed()) {
                session.users().updateFederatedIdentity(realm, user, new FederatedIdentityModel(alias, fi.getUserId(), fi.getUserName(), c.value()));
            }
        } catch (Storage.StorageException e) {
            org.jboss.logging.Logger.getLogger("dev.freshtoken.keycloak").warnf(
                    "fresh-token: the stored token of IdP '%s', user %s could not be bound to the user (%s): %s", alias, user.getId(),
                    e.code(), e.getMessage());
        }
    }

    /** Never spend the refresh token outside the single-flight path. */
    @Override
    public String refreshTokenForLogout(KeycloakSession session, UserSessionModel userSession) {
        return null;
    }

    /**
     * V1 {@code GET /broker/{alias}/token}. Errors are thrown as WebApplicationException so that
     * Keycloak records the event as an error and answers with our body.
     */
    @Override
    public Response retrieveToken(KeycloakSession session, FederatedIdentityModel identity) {
        String scope = session.getContext().getUri() == null ? null
                : session.getContext().getUri().getQueryParameters().getFirst("scope");
        TokenService.Outcome outcome = new TokenService(session, this).retrieve(identity, null, TokenService.Endpoint.V1, scope);
        if (outcome.isError()) {
            throw new WebApplicationException(outcome.errorCode(), outcome.response());
        }
        return outcome.response();
    }

    /**
     * V2 {@code POST /broker/{alias}/token} (26.6+). Keycloak turns any exception here into a
     * bare 400, so errors are returned as responses. The user-session copy of the token is
     * never used: the stored row is the one source of truth.
     */
    @Override
    public Response retrieveToken(KeycloakSession session, FederatedIdentityModel identity,
                                  UserSessionModel userSession, UserModel user) {
        String scope = null;
        try {
            scope = session.getContext().getHttpRequest().getDecodedFormParameters().getFirst("scope");
        } catch (RuntimeException e) {
            // no form body: the IdP's own token set
        }
        return new TokenService(session, this).retrieve(identity, user, TokenService.Endpoint.V2, scope).response();
    }

    /**
     * Stock token exchange refreshes without a lock and drops the stored token on a 5xx.
     * Until it is routed through the core, it is refused for our IdP types.
     */
    @Override
    protected Response exchangeStoredToken(UriInfo uriInfo, EventBuilder event, ClientModel authorizedClient,
                                           UserSessionModel tokenUserSession, UserModel tokenSubject) {
        return TokenService.exchangeRefused(event, getConfig().getAlias());
    }

    @Override
    protected Response exchangeSessionToken(UriInfo uriInfo, EventBuilder event, ClientModel authorizedClient,
                                            UserSessionModel tokenUserSession, UserModel tokenSubject) {
        return TokenService.exchangeRefused(event, getConfig().getAlias());
    }
}
