package dev.freshtoken.keycloak.idp;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.keycloak.Config;
import org.keycloak.broker.provider.AbstractIdentityProviderFactory;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.provider.ProviderConfigProperty;
import org.keycloak.provider.ProviderConfigurationBuilder;
import org.keycloak.provider.ServerInfoAwareProviderFactory;

import dev.freshtoken.keycloak.nativecore.NativeLibrary;
import dev.freshtoken.keycloak.telemetry.Telemetry;

/** What both of our IdP types share: settings, native-library loading, operational info. */
public abstract class AbstractFreshTokenFactory extends AbstractIdentityProviderFactory<FreshTokenIdentityProvider>
        implements ServerInfoAwareProviderFactory {

    /** The provider ids of our IdP types (the IdPs whose stored tokens this extension manages). */
    public static final Set<String> PROVIDER_IDS = Set.of(EntraOidcIdentityProviderFactory.PROVIDER_ID,
            FreshOidcIdentityProviderFactory.PROVIDER_ID);

    private final String id;
    private final String name;
    private final String helpText;

    /** {@code id}: the provider id stored with every IdP of this type (never changes); name and help: the admin console's. */
    protected AbstractFreshTokenFactory(String id, String name, String helpText) {
        this.id = id;
        this.name = name;
        this.helpText = helpText;
    }

    @Override
    public String getId() {
        return id;
    }

    @Override
    public String getName() {
        return name;
    }

    @Override
    public String getHelpText() {
        return helpText;
    }

    /** SPI option {@code --spi-identity-provider--<id>--library-path}. */
    static final String LIBRARY_PATH_OPTION = "library-path";

    @Override
    public void init(Config.Scope config) {
        String path = config.get(LIBRARY_PATH_OPTION);
        if (path != null && !path.isBlank()) {
            NativeLibrary.configurePath(path);
        }
    }

    /** Loads the native core at start-up (never at build time) so that problems show in the log at once. */
    @Override
    public void postInit(KeycloakSessionFactory factory) {
        NativeLibrary.ensureLoaded();
        Telemetry.registerGauges();
    }

    @Override
    public Map<String, String> getOperationalInfo() {
        return NativeLibrary.status().asInfo();
    }

    @Override
    public List<ProviderConfigProperty> getConfigMetadata() {
        return ProviderConfigurationBuilder.create()
                .property().name(LIBRARY_PATH_OPTION).type("string")
                .helpText("Absolute path of libfresh_token_core.so (or its directory). Default: next to the provider JAR in providers/.")
                .add().build();
    }

    /**
     * Our settings, shown on the create page and in the IdP page's general settings. Client ID
     * and secret are not among them: the console's own client fields (create page, and the
     * IdP page's OIDC section) edit the same keys.
     */
    protected static List<ProviderConfigProperty> commonProperties(boolean entra) {
        List<ProviderConfigProperty> list = new ArrayList<>(ProviderConfigurationBuilder.create()
                .property().name("defaultScope").label("Scopes")
                .type(ProviderConfigProperty.STRING_TYPE)
                .defaultValue(entra ? "openid profile email" : "openid")
                .helpText(entra ? "Space-separated scopes requested at login, for ONE resource (e.g. 'openid profile email User.Read' "
                        + "for Microsoft Graph). offline_access is added automatically unless switched off below."
                        : "Space-separated scopes requested at login.")
                .add()
                .property().name(FreshTokenConfig.ADD_OFFLINE_ACCESS).label("Request offline_access")
                .type(ProviderConfigProperty.BOOLEAN_TYPE).defaultValue(Boolean.toString(entra))
                .helpText("Adds offline_access to the login scopes so that the IdP issues a refresh token. "
                        + "Without a refresh token the token cannot be refreshed and users must sign in again when it expires.")
                .add()
                .property().name(FreshTokenConfig.MIN_VALIDITY).label("Minimum token validity (seconds)")
                .type(ProviderConfigProperty.STRING_TYPE).defaultValue(Integer.toString(FreshTokenConfig.DEFAULT_MIN_VALIDITY_S))
                .helpText("A stored access token that expires within this many seconds is refreshed before it is handed out "
                        + "(Keycloak's own key minValidityToken).")
                .add()
                .property().name(FreshTokenConfig.INCLUDE_REFRESH_TOKEN).label("Include refresh token in answers")
                .type(ProviderConfigProperty.BOOLEAN_TYPE).defaultValue("false")
                .helpText("Off (recommended): the broker token endpoint leaves out the upstream refresh token, so apps cannot "
                        + "spend the refresh token Keycloak holds. Turn on only for apps that depend on it.")
                .add()
                .property().name(FreshTokenConfig.REFRESH_SCOPE).label("Refresh scope")
                .type(ProviderConfigProperty.STRING_TYPE)
                .helpText(entra ? "Scope sent with refresh requests. Empty: the login scopes (Entra requires one resource per request)."
                        : "Scope sent with refresh requests. Empty: no scope parameter (the IdP keeps the granted scope).")
                .add()
                .property().name(FreshTokenConfig.ALLOWED_CLIENTS).label("Clients allowed to read tokens")
                .type(ProviderConfigProperty.MULTIVALUED_STRING_TYPE)
                .helpText("Client IDs whose users' tokens may be read through the broker token endpoint for this IdP. "
                        + "Empty: every client Keycloak lets through (the 'read-token' role on V1, the client allow-list on V2).")
                .add()
                .property().name(FreshTokenConfig.RESOURCE_SCOPES).label("Scopes apps may request")
                .type(ProviderConfigProperty.MULTIVALUED_STRING_TYPE)
                .helpText("Scope strings an app may ask for with ?scope= on the broker token endpoint, to get a token for "
                        + "another resource from the same refresh token (one resource each, e.g. "
                        + "https://graph.microsoft.com/User.Read or api://<app-id>/.default). Anything else is 'forbidden'.")
                .add()
                .property().name(FreshTokenConfig.ASSERTION_ALG).label("Certificate assertion algorithm")
                .type(ProviderConfigProperty.LIST_TYPE).options("PS256", "RS256").defaultValue("PS256")
                .helpText("With client authentication 'JWT signed with private key': PS256 with an x5t#S256 header "
                        + "(Microsoft's current guidance) or RS256 with x5t. Used for refresh, on-behalf-of and app-only requests.")
                .add()
                .property().name(FreshTokenConfig.ASSERTION_KEY_FILE).label("Certificate assertion: private key file")
                .type(ProviderConfigProperty.STRING_TYPE)
                .helpText("PEM file (PKCS#8 or PKCS#1 RSA) on the Keycloak host, inside the key directory the server operator "
                        + "names (SPI option assertion-key-dir of fresh-token-storage; not set: key files are off). Empty: the realm's active RS256 key "
                        + "(Realm settings > Keys), the one Keycloak itself signs login assertions with.")
                .add()
                .property().name(FreshTokenConfig.ASSERTION_CERT_FILE).label("Certificate assertion: certificate file")
                .type(ProviderConfigProperty.STRING_TYPE)
                .helpText("PEM certificate uploaded to the app registration (Certificates & secrets), inside the same key directory. "
                        + "Empty: the realm key's certificate.")
                .add()
                .property().name(FreshTokenConfig.OBO_CLIENT_ID).label("On-behalf-of: middle-tier client ID")
                .type(ProviderConfigProperty.STRING_TYPE)
                .helpText("Client ID of the app registration that calls downstream APIs on behalf of the user "
                        + "(GET /realms/{realm}/fresh-token/{alias}/obo). Its own API scope is the assertion's audience.")
                .add()
                .property().name(FreshTokenConfig.OBO_CLIENT_SECRET).label("On-behalf-of: middle-tier client secret")
                .type(ProviderConfigProperty.PASSWORD).secret(true)
                .helpText("Secret of the middle-tier app, or a vault reference ${vault.key}.")
                .add()
                .property().name(FreshTokenConfig.OBO_ASSERTION_SCOPE).label("On-behalf-of: assertion scope")
                .type(ProviderConfigProperty.STRING_TYPE)
                .helpText("Scope of the user token presented as the assertion. Default: api://<middle-tier client ID>/.default. "
                        + "Never a Graph scope: Entra rejects a Graph token as assertion (AADSTS50013).")
                .add()
                .property().name(FreshTokenConfig.OBO_SCOPES).label("On-behalf-of: scopes apps may request")
                .type(ProviderConfigProperty.MULTIVALUED_STRING_TYPE)
                .helpText("Downstream scopes apps may ask for with ?scope= on the obo endpoint, e.g. https://graph.microsoft.com/.default.")
                .add()
                .property().name(FreshTokenConfig.APP_TOKEN_SCOPES).label("App-only: scopes")
                .type(ProviderConfigProperty.MULTIVALUED_STRING_TYPE)
                .helpText("Scopes (ending in /.default) for which callers may get an app-only token of this IdP's app "
                        + "registration (GET /realms/{realm}/fresh-token/{alias}/app-token?scope=...).")
                .add()
                .property().name(FreshTokenConfig.APP_TOKEN_ROLE).label("App-only: required realm role")
                .type(ProviderConfigProperty.STRING_TYPE).defaultValue(FreshTokenConfig.DEFAULT_APP_TOKEN_ROLE)
                .helpText("Only callers whose token carries this realm role get app-only tokens. Grant it deliberately: "
                        + "app-only tokens act with the app registration's application permissions.")
                .add()
                .property().name(FreshTokenConfig.TIMEOUT_MS).label("IdP request timeout (ms)")
                .type(ProviderConfigProperty.STRING_TYPE).defaultValue("10000")
                .helpText("Total time allowed for one request to the IdP's token endpoint.")
                .add()
                .property().name(FreshTokenConfig.CONNECT_TIMEOUT_MS).label("IdP connect timeout (ms)")
                .type(ProviderConfigProperty.STRING_TYPE).defaultValue("5000")
                .helpText("Time allowed to open a connection to the IdP.")
                .add()
                .property().name(FreshTokenConfig.MAX_RESPONSE_BYTES).label("Maximum IdP answer size (bytes)")
                .type(ProviderConfigProperty.STRING_TYPE).defaultValue("1048576")
                .helpText("A token endpoint answer larger than this is rejected (upstream_error) without being read further.")
                .add()
                .property().name(FreshTokenConfig.MAX_ATTEMPTS).label("Refresh attempts")
                .type(ProviderConfigProperty.STRING_TYPE).defaultValue("3")
                .helpText("Attempts for a refresh that fails transiently (timeout, 5xx, 429), with backoff, before answering retry_later.")
                .add()
                .build());
        return list;
    }
}
