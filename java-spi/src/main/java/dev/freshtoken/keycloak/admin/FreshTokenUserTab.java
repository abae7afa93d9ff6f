package dev.freshtoken.keycloak.admin;

import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

import jakarta.ws.rs.ForbiddenException;
import jakarta.ws.rs.NotAuthorizedException;
import jakarta.ws.rs.core.HttpHeaders;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.jboss.logging.Logger;
import org.keycloak.common.util.Time;
import org.keycloak.component.ComponentModel;
import org.keycloak.component.ComponentValidationException;
import org.keycloak.jose.jws.JWSInput;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.UserModel;
import org.keycloak.provider.ProviderConfigProperty;
import org.keycloak.provider.ProviderConfigurationBuilder;
import org.keycloak.representations.AccessToken;
import org.keycloak.services.managers.AppAuthManager;
import org.keycloak.services.managers.AuthenticationManager;
import org.keycloak.services.resources.admin.AdminAuth;
import org.keycloak.services.resources.admin.fgap.AdminPermissionEvaluator;
import org.keycloak.services.resources.admin.fgap.AdminPermissions;
import org.keycloak.services.ui.extend.UiTabProvider;
import org.keycloak.services.ui.extend.UiTabProviderFactory;

import dev.freshtoken.keycloak.NoLifecycle;

/**
 * A "fresh-token" tab on the admin console's user details page (Keycloak's declarative UI,
 * feature {@code declarative-ui}). What the console offers for such a tab is a form over one
 * realm-level component: it reads the component's stored config, and on Save writes the form
 * plus the page's route parameters ({@code realm}, {@code id} = the user, {@code tab}) back.
 * Nothing runs when the tab is read, so the status is computed on Save, in
 * {@link #validateConfiguration}: for the user of the page, with the saving admin's user
 * permissions (view-users; manage-users to clear), written into the result fields (never a
 * token value), and shown when the tab is opened again.
 */
public class FreshTokenUserTab implements UiTabProvider, UiTabProviderFactory<ComponentModel>, NoLifecycle<UiTabProvider> {

    public static final String ID = "fresh-token";
    /** The console's route parameter for the user; declared so that an update keeps it (undeclared keys are dropped). */
    static final String USER_ID = "id";
    static final String USER = "freshTokenUser";
    static final String CHECKED_AT = "freshTokenCheckedAt";
    static final String STORED = "freshTokenStored";
    static final String VALID_UNTIL = "freshTokenAccessTokenValidUntil";
    static final String REFRESHED = "freshTokenLastRefreshed";
    static final String CLEAR = "freshTokenClear";
    private static final Logger LOG = Logger.getLogger("dev.freshtoken.keycloak");
    /** Route parameters the console merges into the saved config besides the user id; dropped. */
    private static final List<String> ROUTE_PARAMS = List.of("realm", "tab");

    @Override
    public String getId() {
        return ID;
    }

    @Override
    public String getPath() {
        return "/:realm/users/:id/:tab";
    }

    @Override
    public Map<String, String> getParams() {
        return Map.of("tab", ID);
    }

    @Override
    public String getHelpText() {
        return "Stored fresh-token status of the user (entra-oidc / fresh-oidc identity providers).";
    }

    @Override
    public List<ProviderConfigProperty> getConfigProperties() {
        String filled = " Filled in by Keycloak when you click Save (edits are ignored); open the tab again to see it.";
        return ProviderConfigurationBuilder.create()
                .property().name(USER_ID).label("User ID").type(ProviderConfigProperty.STRING_TYPE)
                .helpText("ID of the user the status below belongs to. On Save the console sets it to the user of this page." + filled).add()
                .property().name(USER).label("Status of user").type(ProviderConfigProperty.STRING_TYPE)
                .helpText("The user the status below belongs to: the user of this page at the last Save by any admin." + filled).add()
                .property().name(CHECKED_AT).label("Checked at").type(ProviderConfigProperty.STRING_TYPE)
                .helpText("When the status below was read (UTC)." + filled).add()
                .property().name(STORED).label("Token stored").type(ProviderConfigProperty.TEXT_TYPE)
                .helpText("Per linked entra-oidc / fresh-oidc identity provider (alias): whether a token is stored, "
                        + "and whether it has a refresh token. The token itself is never shown." + filled).add()
                .property().name(VALID_UNTIL).label("Access token valid until").type(ProviderConfigProperty.TEXT_TYPE)
                .helpText("Per identity provider: when the stored access token expires (UTC), or that it has expired. "
                        + "An expired access token is refreshed on the app's next token request." + filled).add()
                .property().name(REFRESHED).label("Last refreshed").type(ProviderConfigProperty.TEXT_TYPE)
                .helpText("Per identity provider: when the extension last refreshed the stored token (UTC); "
                        + "'not since sign-in' if it is still the one stored at sign-in." + filled).add()
                .property().name(CLEAR).label("Clear stored token on save").type(ProviderConfigProperty.BOOLEAN_TYPE)
                .defaultValue("false")
                .helpText("Switch on and click Save to clear the stored token of every entra-oidc / fresh-oidc identity "
                        + "provider of this user (needs manage-users). The link stays; the app's next token request "
                        + "answers reauth_required until the user signs in through the identity provider again.").add()
                .build();
    }

    @Override
    public void validateConfiguration(KeycloakSession session, RealmModel realm, ComponentModel model)
            throws ComponentValidationException {
        String userId = model.get(USER_ID);
        boolean clear = Boolean.parseBoolean(model.get(CLEAR));
        ROUTE_PARAMS.forEach(model.getConfig()::remove);
        model.put(CLEAR, "false");
        if (userId == null || userId.isBlank()) {
            // Saved outside a user page (e.g. the components REST API): nothing to compute.
            clearResults(model);
            return;
        }
        UserModel user = session.users().getUserById(realm, userId);
        if (user == null) {
            throw new ComponentValidationException("fresh-token: user not found in this realm.");
        }
        AdminPermissionEvaluator auth = adminPermissions(session, realm);
        if (!auth.users().canView(user)) {
            throw new ComponentValidationException("fresh-token: viewing a user's token status needs the view-users permission.");
        }
        long now = Time.currentTime();
        if (clear) {
            if (!auth.users().canManage(user)) {
                throw new ComponentValidationException("fresh-token: clearing a user's stored token needs the manage-users permission.");
            }
            for (ObjectNode link : FreshTokenAdminResource.linkStatuses(session, realm, user, now)) {
                String alias = link.path("alias").asText();
                FreshTokenAdminResource.ClearOutcome outcome = FreshTokenAdminResource.clearStoredToken(session, realm, user, alias);
                if (outcome == FreshTokenAdminResource.ClearOutcome.BUSY || outcome == FreshTokenAdminResource.ClearOutcome.INTERRUPTED) {
                    throw new ComponentValidationException("fresh-token: a refresh of the token of '" + alias
                            + "' is in progress; try again shortly.");
                }
                LOG.infof("fresh-token: admin cleared the stored token of user %s for IdP '%s' in the console (%s)",
                        user.getId(), alias, outcome == FreshTokenAdminResource.ClearOutcome.CLEARED ? "a token was stored" : "none was stored");
            }
            now = Time.currentTime();
        }
        List<ObjectNode> links = FreshTokenAdminResource.linkStatuses(session, realm, user, now);
        model.put(USER, user.getUsername() + " (" + user.getId() + ")");
        model.put(CHECKED_AT, Instant.ofEpochSecond(now).toString());
        if (links.isEmpty()) {
            String none = "not linked to an entra-oidc / fresh-oidc identity provider";
            model.put(STORED, none);
            model.put(VALID_UNTIL, none);
            model.put(REFRESHED, none);
            return;
        }
        model.put(STORED, lines(links, FreshTokenUserTab::storedText));
        model.put(VALID_UNTIL, lines(links, FreshTokenUserTab::validUntilText));
        model.put(REFRESHED, lines(links, FreshTokenUserTab::refreshedText));
    }

    private static void clearResults(ComponentModel model) {
        for (String k : List.of(USER_ID, USER, CHECKED_AT, STORED, VALID_UNTIL, REFRESHED)) {
            model.getConfig().remove(k);
        }
    }

    private static String lines(List<ObjectNode> links, Function<ObjectNode, String> f) {
        StringBuilder b = new StringBuilder();
        for (ObjectNode l : links) {
            if (b.length() > 0) {
                b.append('\n');
            }
            b.append(l.path("alias").asText()).append(": ").append(f.apply(l));
        }
        return b.toString();
    }

    private static String storedText(ObjectNode l) {
        if (!l.path("tokenStored").asBoolean()) {
            return "no";
        }
        if (l.hasNonNull("problem")) {
            return "yes (" + l.path("problem").asText() + ")";
        }
        return "yes (refresh token: " + (l.path("refreshTokenStored").asBoolean() ? "yes" : "no") + ")";
    }

    private static String validUntilText(ObjectNode l) {
        if (!l.path("tokenStored").asBoolean()) {
            return "no token stored";
        }
        JsonNode iso = l.path("accessTokenExpiresAtIso");
        if (!iso.isTextual()) {
            return l.path("accessTokenStored").asBoolean() ? "unknown (no expiry stored)" : "no access token stored";
        }
        return iso.asText() + (l.path("accessTokenValid").asBoolean() ? " (valid)" : " (expired)");
    }

    private static String refreshedText(ObjectNode l) {
        if (!l.path("tokenStored").asBoolean()) {
            return "no token stored";
        }
        JsonNode iso = l.path("lastRefreshedAtIso");
        return iso.isTextual() ? iso.asText() : "not since sign-in";
    }

    /**
     * The saving admin's permissions in {@code realm}, from the request's bearer token, as
     * Keycloak's admin REST API checks them (the component API itself only asks for manage-realm).
     */
    private static AdminPermissionEvaluator adminPermissions(KeycloakSession session, RealmModel realm) {
        HttpHeaders headers = session.getContext().getRequestHeaders();
        String tokenString = headers == null ? null : AppAuthManager.extractAuthorizationHeaderToken(headers);
        if (tokenString == null) {
            throw new ComponentValidationException("fresh-token: no admin bearer token in the request.");
        }
        RealmModel adminRealm;
        try {
            AccessToken token = new JWSInput(tokenString).readJsonContent(AccessToken.class);
            String issuer = token.getIssuer();
            adminRealm = issuer == null ? null : session.realms().getRealmByName(
                    java.net.URLDecoder.decode(issuer.substring(issuer.lastIndexOf('/') + 1), java.nio.charset.StandardCharsets.UTF_8));
        } catch (Exception e) {
            throw new ComponentValidationException("fresh-token: the admin bearer token cannot be read.");
        }
        if (adminRealm == null) {
            throw new ComponentValidationException("fresh-token: unknown realm in the admin bearer token.");
        }
        RealmModel contextRealm = session.getContext().getRealm();
        AuthenticationManager.AuthResult result;
        try {
            session.getContext().setRealm(adminRealm);
            result = new AppAuthManager.BearerTokenAuthenticator(session).setRealm(adminRealm)
                    .setConnection(session.getContext().getConnection()).setHeaders(headers).authenticate();
        } catch (NotAuthorizedException | ForbiddenException e) {
            result = null;
        } finally {
            session.getContext().setRealm(contextRealm);
        }
        if (result == null) {
            throw new ComponentValidationException("fresh-token: the admin bearer token is not valid.");
        }
        AdminAuth adminAuth = new AdminAuth(adminRealm, result.getToken(), result.getUser(), result.getClient());
        return AdminPermissions.evaluator(session, realm, adminAuth);
    }

    @Override
    public UiTabProvider create(KeycloakSession session) {
        return this;
    }

    /** Both the factory's and the provider's close: nothing to release. */
    @Override
    public void close() {
    }
}
