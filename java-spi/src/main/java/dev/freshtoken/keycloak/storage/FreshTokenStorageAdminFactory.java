package dev.freshtoken.keycloak.storage;

import java.util.List;
import java.util.Map;

import org.keycloak.Config;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.provider.ProviderConfigProperty;
import org.keycloak.provider.ProviderConfigurationBuilder;
import org.keycloak.provider.ServerInfoAwareProviderFactory;

import dev.freshtoken.keycloak.AdminResourceFactory;
import dev.freshtoken.keycloak.idp.Assertions;

/**
 * {@code /admin/realms/{realm}/fresh-token-storage}: encryption-at-rest status and the bulk
 * encrypt / decrypt operations ({@link StorageAdminResource}). Its SPI options are the one
 * server-wide place of the storage keys:
 * {@code --spi-admin-realm-restapi-extension--fresh-token-storage--key-file=/path} and
 * {@code --spi-admin-realm-restapi-extension--fresh-token-storage--mode=encrypt|decrypt-only} and
 * {@code --spi-admin-realm-restapi-extension--fresh-token-storage--allow-plaintext=true|false}.
 */
public class FreshTokenStorageAdminFactory extends AdminResourceFactory implements ServerInfoAwareProviderFactory {

    public static final String ID = "fresh-token-storage";

    public FreshTokenStorageAdminFactory() {
        super(ID, StorageAdminResource::new);
    }

    @Override
    public void init(Config.Scope config) {
        Storage.configure(config.get(Storage.KEY_FILE_OPTION), config.get(Storage.MODE_OPTION),
                config.getBoolean(Storage.ALLOW_PLAINTEXT_OPTION, false));
        Assertions.configureKeyDir(config.get(Assertions.KEY_DIR_OPTION));
    }

    @Override
    public void postInit(KeycloakSessionFactory factory) {
        Storage.load();
    }

    @Override
    public Map<String, String> getOperationalInfo() {
        return Storage.info();
    }

    @Override
    public List<ProviderConfigProperty> getConfigMetadata() {
        return ProviderConfigurationBuilder.create()
                .property().name(Storage.KEY_FILE_OPTION).type("string")
                .helpText("Key file for encryption at rest of the stored tokens of the fresh-token IdP types: one "
                        + "'<key id> <32-byte key in base64>' per line, the first key encrypts, all keys decrypt. "
                        + "Unset: tokens are stored plain.")
                .add()
                .property().name(Storage.MODE_OPTION).type("string").defaultValue("encrypt")
                .helpText("encrypt (default): new values are encrypted with the first key. decrypt-only: new values are "
                        + "written plain while the keys still read encrypted ones (the uninstall path).")
                .add()
                .property().name(Assertions.KEY_DIR_OPTION).type("string")
                .helpText("The only directory from which IdPs of the fresh-token types may read certificate assertion key "
                        + "and certificate files (clientAssertionKeyFile/clientAssertionCertFile); with {realm} in it, one directory "
                        + "per realm (named after the realm). Unset: key files are off.")
                .add()
                .property().name(Storage.ALLOW_PLAINTEXT_OPTION).type("boolean").defaultValue(false)
                .helpText("While encrypting, use plain (unencrypted) stored tokens found in rows and encrypt them on their "
                        + "next write, instead of refusing them (storage_plaintext_row). Only for the migration window after "
                        + "switching encryption on: run POST .../fresh-token-storage/encrypt, then switch this off.")
                .add().build();
    }
}
