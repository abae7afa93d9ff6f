package dev.freshtoken.keycloak.refresh;

import java.util.Map;

import org.jboss.logging.Logger;
import org.keycloak.models.FederatedIdentityModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.SingleUseObjectProvider;
import org.keycloak.models.UserModel;
import org.keycloak.models.UserProvider;
import org.keycloak.models.utils.KeycloakModelUtils;

import dev.freshtoken.keycloak.idp.FreshTokenConfig;
import dev.freshtoken.keycloak.nativecore.CoreAnswer;
import dev.freshtoken.keycloak.nativecore.ErrorCode;
import dev.freshtoken.keycloak.storage.StoredRow;

/**
 * The row-locked refresh of one (realm, user, IdP): the committed row read in a transaction of
 * its own, the core's refresh under the database row lock, the write of the new token set, and
 * what happens when the database refuses that write ({@link Kept}). Called by {@link SingleFlight}
 * while it holds the cluster lock.
 */
final class RowLockedRefresh implements SingleFlight.Rows {

    private static final Logger LOG = Logger.getLogger("dev.freshtoken.keycloak");

    /** Retry-After of the answer when the database is unreachable. */
    static final long STORAGE_RETRY_AFTER_S = 5;

    private final KeycloakSession session;
    private final FreshTokenConfig config;
    private final CoreMapping mapping;

    RowLockedRefresh(KeycloakSession session, FreshTokenConfig config, CoreMapping mapping) {
        this.session = session;
        this.config = config;
        this.mapping = mapping;
    }

    /**
     * The stored token as committed in the database, read in a transaction of its own. It is read
     * from the local user storage (JPA), not through Keycloak's user cache: in a cluster, a node's
     * cached federated-identity link can still hold a token set another node has already replaced
     * (the cross-node invalidation arrives later), and refreshing with that spent refresh token
     * would be a reuse (cluster test). Users that are not in local storage fall back to the cache layer.
     */
    @Override
    public String readStoredToken(String realmId, String userId) {
        String alias = config.getAlias();
        return KeycloakModelUtils.runJobInTransactionWithResult(session.getKeycloakSessionFactory(), s -> {
            RealmModel r = s.realms().getRealm(realmId);
            if (r == null) {
                return null;
            }
            s.getContext().setRealm(r); // user lookups need a realm-bound session
            UserProvider local = s.getProvider(UserProvider.class);
            UserModel lu = local == null ? null : local.getUserById(r, userId);
            if (lu != null) {
                FederatedIdentityModel fi = local.getFederatedIdentity(r, lu, alias);
                return fi == null ? null : fi.getToken();
            }
            UserModel u = s.users().getUserById(r, userId);
            FederatedIdentityModel fi = u == null ? null : s.users().getFederatedIdentity(r, u, alias);
            return fi == null ? null : fi.getToken();
        });
    }

    /** The holder's answer and the fingerprint of the row it refreshed (null if nothing was read). */
    record Held(CoreAnswer answer, String rowFingerprint) {
    }

    /**
     * The refresh itself, in a transaction of its own that holds the database row lock
     * ({@code SELECT ... FOR UPDATE} on the user's federated-identity row) from the read, across
     * the core's upstream call, to the write of the new token set; it commits before the
     * cluster lock is released. The cluster lock only keeps waiters from each holding a
     * database connection; correctness rests on the row lock: a second holder (a lock that
     * expired, a cluster that split) blocks until the first one committed and then reads the
     * token set it wrote, so a refresh token is never sent twice. Returns null when the row is gone.
     */
    @Override
    public Held refresh(Ask ask, String method) {
        String realmId = ask.binding().realm();
        String userId = ask.binding().user();
        String alias = config.getAlias();
        SingleUseObjectProvider store = session.singleUseObjects();
        Map<String, String> kept = Kept.get(store, realmId, userId, alias);
        CoreAnswer[] got = new CoreAnswer[1];
        String[] row = new String[1];
        String[] dbRow = new String[1];
        String[] toWrite = new String[1];
        String[] link = new String[2];
        try {
            KeycloakModelUtils.runJobInTransaction(session.getKeycloakSessionFactory(), s -> {
                RealmModel r = s.realms().getRealm(realmId);
                if (r == null) {
                    return;
                }
                s.getContext().setRealm(r);
                StoredRow.Row locked = StoredRow.lockAndRead(s, userId, alias);
                if (locked == null || locked.token() == null || locked.token().isBlank()) {
                    return;
                }
                dbRow[0] = TokenService.fingerprint(locked.token());
                link[0] = locked.federatedUserId();
                link[1] = locked.federatedUsername();
                // A token set refreshed earlier whose write the database refused: newer than the
                // row, so the refresh starts from it (its refresh token is the live one).
                String current = Kept.matching(kept, dbRow[0]) ? kept.get(Kept.STORE) : locked.token();
                row[0] = TokenService.fingerprint(current);
                CoreAnswer answer = mapping.retrieve(ask, current, method);
                got[0] = answer;
                toWrite[0] = answer.store() != null ? answer.store() : (current.equals(locked.token()) ? null : current);
                if (toWrite[0] != null) {
                    UserModel u = s.users().getUserById(r, userId);
                    if (u == null) {
                        LOG.warnf("fresh-token: user %s vanished before the refreshed token of IdP '%s' was stored", userId, alias);
                        toWrite[0] = null;
                        return;
                    }
                    // Keycloak's own update: writes the row we hold locked and invalidates the
                    // user in every node's cache when the transaction commits. The model is a new
                    // object on purpose: never call setToken on a model from s.users() (or on the
                    // `identity` Keycloak passed in). Keycloak's user cache hands out its cached
                    // model itself, the same object concurrent requests on this node hold, and
                    // Keycloak's V1 token endpoint writes `identity` back at the end of its request
                    // when its token changed: a request finishing late would store an outdated
                    // token set over a newer one (a spent refresh token; seen in the cluster test).
                    s.users().updateFederatedIdentity(r, u, new FederatedIdentityModel(alias, link[0], link[1], toWrite[0]));
                }
            });
            if (kept != null && (toWrite[0] != null || !Kept.matching(kept, dbRow[0]))) {
                Kept.remove(store, realmId, userId, alias); // written now, or void (the row changed)
                if (toWrite[0] != null && Kept.matching(kept, dbRow[0])) {
                    LOG.infof("fresh-token: IdP '%s', user %s: the kept token set is stored now", alias, userId);
                }
            }
        } catch (RuntimeException e) {
            if (got[0] == null) {
                return new Held(storageUnavailable(e), null);
            }
            if (toWrite[0] != null) {
                // The IdP answered (or a kept set is being written) but the commit failed: the row
                // still holds the old, possibly spent refresh token. Write again; until that lands
                // keep the new set where the next holder and the waiters find it.
                got[0] = persistAfterRefusal(realmId, userId, dbRow[0], toWrite[0], link, e, got[0]);
            }
        }
        return got[0] == null ? null : new Held(got[0], row[0]);
    }

    /** Write attempts after the database refused the first one (each in a new transaction). */
    static final int WRITE_RETRIES = 3;
    static final long WRITE_BACKOFF_MS = 100;

    /**
     * The write of a refreshed token set was refused: try again a few times (short backoff,
     * a new transaction each, the row locked and still the one we refreshed from). If none
     * lands, keep the set (the at-rest form: sealed when encryption is on) in the cluster-wide
     * single-use store under {@link Kept}, where the next refresh and the waiters take it
     * instead of the stale row. Returns the caller's answer, with the {@code token_not_persisted}
     * warning when the set could be neither stored nor kept.
     */
    private CoreAnswer persistAfterRefusal(String realmId, String userId, String dbRow, String value, String[] link,
            RuntimeException first, CoreAnswer answer) {
        String alias = config.getAlias();
        RuntimeException last = first;
        for (int attempt = 1; attempt <= WRITE_RETRIES; attempt++) {
            boolean[] superseded = new boolean[1];
            try {
                TokenService.sleep(WRITE_BACKOFF_MS << (attempt - 1));
                KeycloakModelUtils.runJobInTransaction(session.getKeycloakSessionFactory(), s -> {
                    RealmModel r = s.realms().getRealm(realmId);
                    if (r == null) {
                        superseded[0] = true;
                        return;
                    }
                    s.getContext().setRealm(r);
                    StoredRow.Row locked = StoredRow.lockAndRead(s, userId, alias);
                    UserModel u = s.users().getUserById(r, userId);
                    if (locked == null || u == null || locked.token() == null || value.equals(locked.token())) {
                        superseded[0] = true; // gone, or the earlier commit did land after all
                        return;
                    }
                    if (!dbRow.equals(TokenService.fingerprint(locked.token()))) {
                        superseded[0] = true; // a new sign-in (or an admin) replaced the row: it wins
                        return;
                    }
                    s.users().updateFederatedIdentity(r, u, new FederatedIdentityModel(alias, link[0], link[1], value));
                });
                Kept.remove(session.singleUseObjects(), realmId, userId, alias);
                LOG.infof("fresh-token: IdP '%s', user %s: the refreshed token set was stored on write attempt %d%s", alias,
                        userId, attempt + 1, superseded[0] ? " (the row had changed meanwhile; nothing written)" : "");
                return answer;
            } catch (RuntimeException e) {
                last = e;
            }
        }
        try {
            Kept.put(session.singleUseObjects(), realmId, userId, alias, dbRow, value);
            LOG.warnf("fresh-token: IdP '%s', user %s: the database refused the refreshed token set %d times (%s); it is kept "
                    + "in the cluster's single-use store (up to %d s) and used instead of the stale row until a write succeeds",
                    alias, userId, WRITE_RETRIES + 1, rootMessage(last), Kept.TTL_S);
            return answer;
        } catch (RuntimeException e) {
            Kept.remove(session.singleUseObjects(), realmId, userId, alias); // an older kept set is spent now
            LOG.errorf("fresh-token: IdP '%s', user %s: the refreshed token set could not be stored (%s) nor kept (%s); "
                    + "the next refresh sends the old refresh token, which an IdP with strict rotation refuses "
                    + "(the user then signs in again)", alias, userId, rootMessage(last), e.getClass().getName());
            return answer.withWarning(TokenService.NOT_PERSISTED);
        }
    }

    /** The database failed under us: a documented retry_later (503), never a stale token. */
    @Override
    public CoreAnswer storageUnavailable(RuntimeException e) {
        LOG.warnf("fresh-token: IdP '%s': the stored token could not be read or locked (%s: %s)", config.getAlias(),
                e.getClass().getSimpleName(), rootMessage(e));
        return CoreAnswer.error(ErrorCode.RETRY_LATER, "Keycloak's database is not reachable right now; try again shortly.",
                STORAGE_RETRY_AFTER_S);
    }

    /** A database failure (JDBC or JPA) anywhere in the cause chain. */
    static boolean isStorageFailure(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
            if (t instanceof java.sql.SQLException || t instanceof jakarta.persistence.PersistenceException) {
                return true;
            }
        }
        return false;
    }

    /** The innermost cause's class name only: database messages can quote SQL parameters. */
    static String rootMessage(Throwable e) {
        Throwable t = e;
        while (t.getCause() != null && t.getCause() != t) {
            t = t.getCause();
        }
        return t.getClass().getName();
    }
}
