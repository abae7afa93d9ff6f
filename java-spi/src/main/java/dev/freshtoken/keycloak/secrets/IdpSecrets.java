package dev.freshtoken.keycloak.secrets;

import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.keycloak.component.ComponentModel;
import org.keycloak.models.IdentityProviderModel;
import org.keycloak.models.RealmModel;
import org.keycloak.provider.ProviderEvent;

import dev.freshtoken.keycloak.IdpSecretSpi;
import dev.freshtoken.keycloak.idp.AbstractFreshTokenFactory;
import dev.freshtoken.keycloak.idp.FreshTokenConfig;

/**
 * Secret-typed settings of our IdP types. Keycloak masks only {@code clientSecret} in an IdP's
 * representation, admin events and partial export (StripSecretsUtils#stripBroker, 26.4-26.7),
 * so a plain value of ours is moved on save into a realm component of type
 * {@link IdpSecretStoreFactory} (whose secret-typed properties Keycloak masks everywhere it
 * shows components) and the IdP config keeps the mask {@code **********}. A vault reference
 * ({@code ${vault.key}}) is not a secret and stays in the config as it is. Saving the mask back
 * (as the admin console does) keeps the stored secret; an empty value removes it.
 */
public final class IdpSecrets {

    /** Keycloak's mask (ComponentRepresentation.SECRET_VALUE). */
    static final String MASK = "**********";
    /** Our PASSWORD-typed IdP settings (AbstractFreshTokenFactory#commonProperties). */
    static final List<String> SECRET_KEYS = List.of(FreshTokenConfig.OBO_CLIENT_SECRET);

    private static final Pattern VAULT_VALUE = Pattern.compile("^\\$\\{vault\\.(.+?)}$");
    /** Set while a dry run validates a config (the migration plan): mask in memory, write nothing. */
    private static final ThreadLocal<Boolean> DRY_RUN = new ThreadLocal<>();

    private IdpSecrets() {
    }

    static boolean isVaultReference(String v) {
        return v != null && VAULT_VALUE.matcher(v.trim()).matches();
    }

    /** A value that is a secret to hide: not empty, not the mask, not a vault reference. */
    static boolean isPlainSecret(String v) {
        return v != null && !v.isBlank() && !MASK.equals(v.trim()) && !isVaultReference(v);
    }

    /**
     * Save time (IdentityProviderModel#validate, called by Keycloak for create, update and
     * import): plain secrets go to the realm's component for this IdP, the config keeps the mask.
     */
    public static void onSave(IdentityProviderModel model, RealmModel realm) {
        if (realm == null || model.getAlias() == null) {
            return;
        }
        if (Boolean.TRUE.equals(DRY_RUN.get())) {
            for (String key : SECRET_KEYS) {
                if (isPlainSecret(model.getConfig().get(key))) {
                    model.getConfig().put(key, MASK);
                }
            }
            return;
        }
        Map<String, String> config = model.getConfig();
        ComponentModel stored = find(realm, model.getAlias());
        boolean changed = false;
        ComponentModel target = stored != null ? stored : newComponent(realm, model.getAlias());
        for (String key : SECRET_KEYS) {
            String v = config.get(key);
            if (isPlainSecret(v)) {
                target.put(key, v);
                config.put(key, MASK);
                changed = true;
            } else if (v != null && MASK.equals(v.trim())) {
                if (stored == null || blank(stored.get(key))) {
                    config.remove(key); // nothing stored behind the mask (e.g. a masked partial export imported)
                }
            } else if (stored != null && stored.contains(key)) {
                // empty (removed) or a vault reference: nothing of ours to keep
                target.getConfig().remove(key);
                changed = true;
            }
        }
        if (!changed) {
            return;
        }
        boolean empty = SECRET_KEYS.stream().allMatch(k -> blank(target.get(k)));
        if (stored == null) {
            if (!empty) {
                realm.addComponentModel(target);
            }
        } else if (empty) {
            realm.removeComponent(stored);
        } else {
            realm.updateComponent(target);
        }
    }

    /**
     * The value to use for a secret setting: the stored secret behind the mask, else the
     * config's value (a vault reference, or a plain value saved before this version).
     */
    public static String read(RealmModel realm, IdentityProviderModel model, String key) {
        String v = model.getConfig().get(key);
        if (v == null || !MASK.equals(v.trim())) {
            return v == null ? "" : v.trim();
        }
        ComponentModel stored = realm == null ? null : find(realm, model.getAlias());
        String s = stored == null ? null : stored.get(key);
        return s == null ? "" : s;
    }

    /** Runs a validation that must not write (a dry run): secrets are masked in memory only. */
    public static void withoutWrites(Runnable validation) {
        DRY_RUN.set(Boolean.TRUE);
        try {
            validation.run();
        } finally {
            DRY_RUN.remove();
        }
    }

    /**
     * An IdP leaving our types (migration to a stock type, the uninstall path): its stored
     * secrets are deleted with their masks, so no component of ours is left behind for a
     * Keycloak without this JAR (whose component listing and partial export need the type).
     */
    public static void forget(RealmModel realm, IdentityProviderModel model) {
        ComponentModel stored = find(realm, model.getAlias());
        if (stored != null) {
            realm.removeComponent(stored);
        }
        for (String key : SECRET_KEYS) {
            String v = model.getConfig().get(key);
            if (v != null && MASK.equals(v.trim())) {
                model.getConfig().remove(key);
            }
        }
    }

    /** Deletes the IdP's secrets with the IdP. */
    static void onIdentityProviderRemoved(ProviderEvent event) {
        if (event instanceof RealmModel.IdentityProviderRemovedEvent e && e.getRemovedIdentityProvider() != null
                && AbstractFreshTokenFactory.PROVIDER_IDS.contains(e.getRemovedIdentityProvider().getProviderId())) {
            ComponentModel stored = find(e.getRealm(), e.getRemovedIdentityProvider().getAlias());
            if (stored != null) {
                e.getRealm().removeComponent(stored);
            }
        }
    }

    /**
     * Masks our plain secrets in an admin event's representation (an IdP, or a realm/partial
     * import with IdPs): every object of one of our provider ids with a config map.
     * Returns whether anything was masked.
     */
    static boolean maskRepresentation(JsonNode node) {
        boolean masked = false;
        if (node == null) {
            return false;
        }
        if (node.isObject()) {
            JsonNode providerId = node.get("providerId");
            JsonNode config = node.get("config");
            if (providerId != null && AbstractFreshTokenFactory.PROVIDER_IDS.contains(providerId.asText())
                    && config instanceof ObjectNode c) {
                for (String key : SECRET_KEYS) {
                    JsonNode v = c.get(key);
                    if (v != null && v.isTextual() && isPlainSecret(v.asText())) {
                        c.put(key, MASK);
                        masked = true;
                    }
                }
            }
        }
        for (JsonNode child : node) {
            masked |= maskRepresentation(child);
        }
        return masked;
    }

    private static ComponentModel find(RealmModel realm, String alias) {
        return realm.getComponentsStream(realm.getId(), IdpSecretSpi.Holder.class.getName())
                .filter(c -> alias.equals(c.getName()) && IdpSecretStoreFactory.PROVIDER_ID.equals(c.getProviderId()))
                .findFirst().orElse(null);
    }

    private static ComponentModel newComponent(RealmModel realm, String alias) {
        ComponentModel c = new ComponentModel();
        c.setName(alias);
        c.setParentId(realm.getId());
        c.setProviderType(IdpSecretSpi.Holder.class.getName());
        c.setProviderId(IdpSecretStoreFactory.PROVIDER_ID);
        return c;
    }

    private static boolean blank(String s) {
        return s == null || s.isBlank();
    }
}
