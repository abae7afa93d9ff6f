package dev.freshtoken.keycloak.endpoint;

import jakarta.ws.rs.Consumes;
import jakarta.ws.rs.GET;
import jakarta.ws.rs.OPTIONS;
import jakarta.ws.rs.POST;
import jakarta.ws.rs.WebApplicationException;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.PathParam;
import jakarta.ws.rs.QueryParam;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.MultivaluedMap;
import jakarta.ws.rs.core.Response;

import org.keycloak.events.EventBuilder;
import org.keycloak.events.EventType;
import org.keycloak.broker.provider.IdentityProvider;
import org.keycloak.broker.provider.IdentityProviderFactory;
import org.keycloak.models.FederatedIdentityModel;
import org.keycloak.models.IdentityProviderModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.ClientModel;
import org.keycloak.models.RealmModel;
import org.keycloak.models.RoleModel;
import org.keycloak.models.UserModel;
import org.keycloak.protocol.oidc.utils.AuthorizeClientUtil;
import org.keycloak.representations.AccessToken;
import org.keycloak.services.cors.Cors;
import org.keycloak.services.managers.AppAuthManager;
import org.keycloak.services.managers.AuthenticationManager;
import org.keycloak.services.resource.RealmResourceProvider;

import dev.freshtoken.keycloak.compat.Compat;
import dev.freshtoken.keycloak.idp.AbstractFreshTokenFactory;
import dev.freshtoken.keycloak.idp.FreshTokenIdentityProvider;
import dev.freshtoken.keycloak.nativecore.ErrorCode;
import dev.freshtoken.keycloak.nativecore.ErrorReply;
import dev.freshtoken.keycloak.refresh.TokenService;

/**
 * {@code /realms/{realm}/fresh-token/{alias}/...}: tokens the stock broker endpoint cannot give.
 * <ul>
 * <li>{@code GET obo?scope=...}: a downstream token via the on-behalf-of grant (Entra) or RFC 8693
 * token exchange (other IdPs), for the signed-in user, as the IdP's middle-tier app;</li>
 * <li>{@code GET app-token?scope=...}: an app-only (client_credentials) token of the IdP's app
 * registration, for callers holding the IdP's app-token role.</li>
 * </ul>
 * Two forms of each:
 * <ul>
 * <li>{@code GET} with {@code Authorization: Bearer <Keycloak access token of this realm>}: for apps
 * that hold the user's (or their service account's) token, SPAs and public clients included; the
 * token's client (azp) must be on the IdP's 'Clients allowed to read tokens';</li>
 * <li>{@code POST} (form) where the calling confidential client authenticates itself with
 * Keycloak's client authentication (HTTP Basic or {@code client_id}/{@code client_secret}, or any
 * other authenticator the realm's client-authentication flow offers) and, for {@code obo}, passes
 * the user's Keycloak access token as {@code subject_token}: for backends. The client must be on
 * the allow-list, and the user's token must have been issued to it ({@code azp}) or for it
 * ({@code aud}).</li>
 * </ul>
 */
public class FreshTokenResource implements RealmResourceProvider {

    private final KeycloakSession session;

    public FreshTokenResource(KeycloakSession session) {
        this.session = session;
    }

    @Override
    public Object getResource() {
        return this;
    }

    @Override
    public void close() {
    }

    @OPTIONS
    @Path("{alias}/{endpoint}")
    public Response preflight() {
        String origin = session.getContext().getRequestHeaders().getHeaderString("Origin");
        Response.ResponseBuilder b = Response.ok();
        if (origin != null) {
            b.header("Access-Control-Allow-Origin", origin)
                    .header("Access-Control-Allow-Credentials", "true")
                    .header("Access-Control-Allow-Methods", "GET, OPTIONS")
                    .header("Access-Control-Allow-Headers", "Authorization, Content-Type, DPoP")
                    .header("Access-Control-Max-Age", "3600")
                    .header("Vary", "Origin");
        }
        return b.build();
    }

    @GET
    @Path("{alias}/obo")
    public Response obo(@PathParam("alias") String alias, @QueryParam("scope") String scope) {
        Caller c = caller(alias);
        if (c.refusal() != null) {
            return c.refusal();
        }
        AuthenticationManager.AuthResult auth = c.auth();
        FreshTokenIdentityProvider provider = c.provider();
        Response notAllowed = clientNotAllowed(provider, alias, Compat.client(auth), Compat.token(auth));
        if (notAllowed != null) {
            return notAllowed;
        }
        return oboFor(provider, alias, Compat.client(auth), Compat.user(auth), Compat.token(auth), scope);
    }

    private Response oboFor(FreshTokenIdentityProvider provider, String alias, ClientModel client, UserModel user,
                            AccessToken token, String scope) {
        if (!hasRole(token, "broker", "read-token")) {
            return error(ErrorCode.FORBIDDEN, "The token lacks the broker client's read-token role.", token);
        }
        RealmModel realm = session.getContext().getRealm();
        FederatedIdentityModel identity = session.users().getFederatedIdentity(realm, user, alias);
        if (identity == null) {
            identity = new FederatedIdentityModel(alias, null, null, null);
        }
        return cors(new TokenService(session, provider).caller(client, user).obo(identity, user, scope).response(), token);
    }

    /**
     * Backend form of {@code obo}: the calling client authenticates itself (Keycloak's client
     * authentication: HTTP Basic, {@code client_id}/{@code client_secret} in the form, or another
     * authenticator of the realm's client flow) and passes the user's access token as
     * {@code subject_token}. Refused: a public client or bad credentials (401
     * {@code invalid_client}), a client not on the IdP's allow-list (403), a subject token that
     * is invalid (401 {@code invalid_token}) or was neither issued to ({@code azp}) nor for
     * ({@code aud}) the calling client (403).
     */
    @POST
    @Path("{alias}/obo")
    @Consumes(MediaType.APPLICATION_FORM_URLENCODED)
    public Response oboForClient(@PathParam("alias") String alias) {
        Backend b = backend(alias);
        if (b.refusal() != null) {
            return b.refusal();
        }
        String subjectToken = b.form().getFirst("subject_token");
        if (subjectToken == null || subjectToken.isBlank()) {
            return error(ErrorCode.INVALID_REQUEST, "The user's Keycloak access token is required as 'subject_token'.", null);
        }
        AuthenticationManager.AuthResult user;
        try {
            user = new AppAuthManager.BearerTokenAuthenticator(session).setTokenString(subjectToken).authenticate();
        } catch (RuntimeException e) {
            user = null;
        }
        // Keycloak's bearer check made the token's client the context client; the caller is ours.
        session.getContext().setClient(b.client());
        if (user == null) {
            return error(ErrorCode.INVALID_TOKEN, "'subject_token' is not a valid, active access token of this realm.", null);
        }
        AccessToken token = Compat.token(user);
        String clientId = b.client().getClientId();
        if (!clientId.equals(token.getIssuedFor()) && !token.hasAudience(clientId)) {
            return error(ErrorCode.FORBIDDEN, "'subject_token' was neither issued to client '" + clientId
                    + "' (azp) nor for it (aud): a client may exchange only its own users' tokens.", null);
        }
        return oboFor(b.provider(), alias, b.client(), Compat.user(user), token, b.form().getFirst("scope"));
    }

    /**
     * Backend form of {@code app-token}: the calling client authenticates itself; its service
     * account must hold the IdP's app-token realm role, and the client must be on the allow-list.
     */
    @POST
    @Path("{alias}/app-token")
    @Consumes(MediaType.APPLICATION_FORM_URLENCODED)
    public Response appTokenForClient(@PathParam("alias") String alias) {
        Backend b = backend(alias);
        if (b.refusal() != null) {
            return b.refusal();
        }
        String role = b.provider().freshConfig().appTokenRole();
        RoleModel roleModel = session.getContext().getRealm().getRole(role);
        UserModel serviceAccount = b.client().isServiceAccountsEnabled()
                ? session.users().getServiceAccount(b.client()) : null;
        if (roleModel == null || serviceAccount == null || !serviceAccount.hasRole(roleModel)) {
            return error(ErrorCode.FORBIDDEN, "App-only tokens of '" + alias + "' need the realm role '" + role
                    + "' on the calling client's service account.", null);
        }
        return new TokenService(session, b.provider()).caller(b.client(), serviceAccount)
                .appToken(b.form().getFirst("scope")).response();
    }

    /** The authenticated, allowed calling client of the backend form, or the answer that refuses it. */
    private record Backend(ClientModel client, FreshTokenIdentityProvider provider, MultivaluedMap<String, String> form,
                           Response refusal) {
        static Backend refused(Response r) {
            return new Backend(null, null, null, r);
        }
    }

    private Backend backend(String alias) {
        FreshTokenIdentityProvider provider = provider(alias);
        if (provider == null) {
            return Backend.refused(error(ErrorCode.NOT_FOUND, "No identity provider '" + alias + "' of a fresh-token type in this realm.", null));
        }
        MultivaluedMap<String, String> form;
        try {
            form = session.getContext().getHttpRequest().getDecodedFormParameters();
        } catch (RuntimeException e) {
            return Backend.refused(error(ErrorCode.INVALID_REQUEST, "A form body (application/x-www-form-urlencoded) is required.", null));
        }
        RealmModel realm = session.getContext().getRealm();
        EventBuilder event = new EventBuilder(realm, session, session.getContext().getConnection()).event(EventType.CLIENT_LOGIN);
        ClientModel client;
        try {
            client = AuthorizeClientUtil.authorizeClient(session, event, Cors.builder()).getClient();
        } catch (WebApplicationException e) {
            // Keycloak answers bad credentials with 401 unauthorized_client (its token endpoint does
            // the same); ours is the RFC 6749 code. Other answers (400 ...) are Keycloak's own.
            if (e.getResponse() != null && e.getResponse().getStatus() == 401) {
                return Backend.refused(error(ErrorCode.INVALID_CLIENT, "Client authentication failed: unknown client, "
                        + "wrong credentials or a disabled client.", null));
            }
            return Backend.refused(e.getResponse());
        }
        if (client == null || client.isPublicClient()) {
            return Backend.refused(error(ErrorCode.INVALID_CLIENT, "Only a confidential client that authenticates itself may use this form; "
                    + "public clients (SPAs) use GET with the user's bearer token.", null));
        }
        session.getContext().setClient(client);
        Response notAllowed = clientNotAllowed(provider, alias, client, null);
        if (notAllowed != null) {
            return Backend.refused(notAllowed);
        }
        return new Backend(client, provider, form, null);
    }

    /** The IdP's 'Clients allowed to read tokens' (tokenReaderClients), for every endpoint of ours. */
    private Response clientNotAllowed(FreshTokenIdentityProvider provider, String alias, ClientModel client, AccessToken token) {
        if (client != null && provider.freshConfig().clientMayReadTokens(client.getClientId())) {
            return null;
        }
        return error(ErrorCode.FORBIDDEN, "Client '" + (client == null ? "?" : client.getClientId())
                + "' is not allowed to read tokens of identity provider '" + alias
                + "' (see the IdP's 'Clients allowed to read tokens').", token);
    }

    @GET
    @Path("{alias}/app-token")
    public Response appToken(@PathParam("alias") String alias, @QueryParam("scope") String scope) {
        Caller c = caller(alias);
        if (c.refusal() != null) {
            return c.refusal();
        }
        AuthenticationManager.AuthResult auth = c.auth();
        FreshTokenIdentityProvider provider = c.provider();
        ClientModel client = Compat.client(auth);
        Response notAllowed = clientNotAllowed(provider, alias, client, Compat.token(auth));
        if (notAllowed != null) {
            return notAllowed;
        }
        String role = provider.freshConfig().appTokenRole();
        AccessToken.Access realmAccess = Compat.token(auth).getRealmAccess();
        if (realmAccess == null || !realmAccess.isUserInRole(role)) {
            return error(ErrorCode.FORBIDDEN, "App-only tokens of '" + alias + "' need the realm role '" + role + "'.", Compat.token(auth));
        }
        return cors(new TokenService(session, provider).caller(Compat.client(auth), Compat.user(auth)).appToken(scope).response(), Compat.token(auth));
    }

    /** The authenticated caller and the IdP it asks about, or the answer that refuses it. */
    private record Caller(AuthenticationManager.AuthResult auth, FreshTokenIdentityProvider provider, Response refusal) {
    }

    private Caller caller(String alias) {
        AuthenticationManager.AuthResult auth = authenticate();
        if (auth == null) {
            return new Caller(null, null, error(ErrorCode.INVALID_TOKEN, "A valid bearer token of this realm is required.", null));
        }
        FreshTokenIdentityProvider provider = provider(alias);
        if (provider == null) {
            return new Caller(auth, null, error(ErrorCode.NOT_FOUND, "No identity provider '" + alias + "' of a fresh-token type in this realm.", Compat.token(auth)));
        }
        return new Caller(auth, provider, null);
    }

    private AuthenticationManager.AuthResult authenticate() {
        try {
            return new AppAuthManager.BearerTokenAuthenticator(session).authenticate();
        } catch (RuntimeException e) {
            return null;
        }
    }

    private FreshTokenIdentityProvider provider(String alias) {
        IdentityProviderModel model = session.identityProviders().getByAlias(alias);
        if (model == null || !AbstractFreshTokenFactory.PROVIDER_IDS.contains(model.getProviderId()) || !model.isEnabled()) {
            return null;
        }
        IdentityProviderFactory<?> factory = (IdentityProviderFactory<?>) session.getKeycloakSessionFactory()
                .getProviderFactory(IdentityProvider.class, model.getProviderId());
        return factory == null ? null : (FreshTokenIdentityProvider) factory.create(session, model);
    }

    private static boolean hasRole(AccessToken token, String client, String role) {
        AccessToken.Access access = token.getResourceAccess(client);
        return access != null && access.isUserInRole(role);
    }

    private Response cors(Response response, AccessToken token) {
        String origin = session.getContext().getRequestHeaders().getHeaderString("Origin");
        if (origin == null || token == null || token.getAllowedOrigins() == null
                || !(token.getAllowedOrigins().contains(origin) || token.getAllowedOrigins().contains("*"))) {
            return response;
        }
        return Response.fromResponse(response)
                .header("Access-Control-Allow-Origin", origin)
                .header("Access-Control-Allow-Credentials", "true")
                .header("Access-Control-Expose-Headers", "Retry-After")
                .header("Vary", "Origin")
                .build();
    }

    private Response error(ErrorCode code, String description, AccessToken token) {
        return cors(ErrorReply.of(code, description), token);
    }
}
