package dev.freshtoken.keycloak;


import jakarta.ws.rs.GET;
import jakarta.ws.rs.OPTIONS;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.PathParam;
import jakarta.ws.rs.QueryParam;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.keycloak.broker.provider.IdentityProvider;
import org.keycloak.broker.provider.IdentityProviderFactory;
import org.keycloak.models.FederatedIdentityModel;
import org.keycloak.models.IdentityProviderModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.ClientModel;
import org.keycloak.models.RealmModel;
import org.keycloak.representations.AccessToken;
import org.keycloak.services.managers.AppAuthManager;
import org.keycloak.services.managers.AuthenticationManager;
import org.keycloak.services.resource.RealmResourceProvider;

/**
 * {@code /realms/{realm}/fresh-token/{alias}/...}: tokens the stock broker endpoint cannot give.
 * <ul>
 * <li>{@code GET obo?scope=...}: a downstream token via the on-behalf-of grant (Entra) or RFC 8693
 * token exchange (other IdPs), for the signed-in user, as the IdP's middle-tier app;</li>
 * <li>{@code GET app-token?scope=...}: an app-only (client_credentials) token of the IdP's app
 * registration, for callers holding the IdP's app-token role.</li>
 * </ul>
 * Callers authenticate with a Keycloak access token of this realm ({@code Authorization: Bearer}).
 */
public class FreshTokenResource implements RealmResourceProvider {

    private static final ObjectMapper MAPPER = new ObjectMapper();

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
        if (!hasRole(Compat.token(auth), "broker", "read-token")) {
            return error(403, "forbidden", "The token lacks the broker client's read-token role.", Compat.token(auth));
        }
        RealmModel realm = session.getContext().getRealm();
        FederatedIdentityModel identity = session.users().getFederatedIdentity(realm, Compat.user(auth), alias);
        if (identity == null) {
            identity = new FederatedIdentityModel(alias, null, null, null);
        }
        return cors(new TokenService(session, provider).caller(Compat.client(auth), Compat.user(auth)).obo(identity, Compat.user(auth), scope).response(), Compat.token(auth));
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
        if (client == null || !provider.freshConfig().clientMayReadTokens(client.getClientId())) {
            return error(403, "forbidden", "Client '" + (client == null ? "?" : client.getClientId())
                    + "' is not allowed to read tokens of identity provider '" + alias
                    + "' (see the IdP's 'Clients allowed to read tokens').", Compat.token(auth));
        }
        String role = provider.freshConfig().appTokenRole();
        AccessToken.Access realmAccess = Compat.token(auth).getRealmAccess();
        if (realmAccess == null || !realmAccess.isUserInRole(role)) {
            return error(403, "forbidden", "App-only tokens of '" + alias + "' need the realm role '" + role + "'.", Compat.token(auth));
        }
        return cors(new TokenService(session, provider).caller(Compat.client(auth), Compat.user(auth)).appToken(scope).response(), Compat.token(auth));
    }

    /** The authenticated caller and the IdP it asks about, or the answer that refuses it. */
    private record Caller(AuthenticationManager.AuthResult auth, FreshTokenIdentityProvider provider, Response refusal) {
    }

    private Caller caller(String alias) {
        AuthenticationManager.AuthResult auth = authenticate();
        if (auth == null) {
            return new Caller(null, null, error(401, "invalid_token", "A valid bearer token of this realm is required.", null));
        }
        FreshTokenIdentityProvider provider = provider(alias);
        if (provider == null) {
            return new Caller(auth, null, error(404, "not_found",
                    "No identity provider '" + alias + "' of a fresh-token type in this realm.", Compat.token(auth)));
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

    private Response error(int status, String code, String description, AccessToken token) {
        ObjectNode body = MAPPER.createObjectNode().put("error", code).put("error_description", description);
        return cors(Response.status(status).entity(body.toString()).type(MediaType.APPLICATION_JSON_TYPE).build(), token);
    }
}
