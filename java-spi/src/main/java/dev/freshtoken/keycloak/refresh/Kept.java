package dev.freshtoken.keycloak.refresh;

import java.util.Map;

import org.jboss.logging.Logger;
import org.keycloak.models.SingleUseObjectProvider;

/**
 * A refreshed token set whose database write was refused, kept in Keycloak's cluster-wide
 * single-use store until a later write lands. The entry holds the value exactly as it would
 * be stored in the row (sealed, {@code ftk1...}, when encryption at rest is on; the stock
 * plain format only when the rows are plain too) and the SHA-256 fingerprint of the row it
 * supersedes: it is used only while the row still holds that stale value, so a new sign-in or
 * an admin clear (which change the row) makes it void. The lifetime is bounded
 * ({@link #TTL_S}) and renewed with every refused write.
 */
final class Kept {

    private static final Logger LOG = Logger.getLogger("dev.freshtoken.keycloak");

    static final String ROW = "row";
    static final String STORE = "store";
    /**
     * At most 12 h: shorter than any Entra refresh token lives (24 h for single-page apps,
     * 90 days otherwise). For an IdP whose refresh tokens live shorter, an expired kept set
     * answers reauth_required, as the stale row would.
     */
    static final int TTL_S = 12 * 3600;

    private Kept() {
    }

    static String key(String realmId, String userId, String alias) {
        return "fresh-token:kept:" + realmId + ":" + userId + ":" + alias;
    }

    /** The kept entry, or null (none, or the store is not reachable: then the row is all there is). */
    static Map<String, String> get(SingleUseObjectProvider store, String realmId, String userId, String alias) {
        try {
            return store.get(key(realmId, userId, alias));
        } catch (RuntimeException e) {
            LOG.warnf("fresh-token: IdP '%s', user %s: the single-use store could not be read (%s)", alias, userId,
                    e.getClass().getName());
            return null;
        }
    }

    /** The entry supersedes the row with this fingerprint. */
    static boolean matching(Map<String, String> kept, String rowFingerprint) {
        return kept != null && rowFingerprint != null && rowFingerprint.equals(kept.get(ROW)) && kept.get(STORE) != null
                && !kept.get(STORE).isBlank();
    }

    /** The value a reader should use for this row: the kept set when it supersedes the row, else the row. */
    static String effective(SingleUseObjectProvider store, String realmId, String userId, String alias, String row) {
        if (row == null) {
            return null;
        }
        Map<String, String> kept = get(store, realmId, userId, alias);
        return matching(kept, TokenService.fingerprint(row)) ? kept.get(STORE) : row;
    }

    static void put(SingleUseObjectProvider store, String realmId, String userId, String alias, String rowFingerprint, String value) {
        store.put(key(realmId, userId, alias), TTL_S, Map.of(ROW, rowFingerprint, STORE, value));
    }

    static void remove(SingleUseObjectProvider store, String realmId, String userId, String alias) {
        try {
            store.remove(key(realmId, userId, alias));
        } catch (RuntimeException e) {
            // Harmless: the entry names the stale row, which no longer matches once the write landed.
            LOG.debugf("fresh-token: IdP '%s', user %s: the kept token set could not be removed (%s)", alias, userId,
                    e.getClass().getName());
        }
    }
}
