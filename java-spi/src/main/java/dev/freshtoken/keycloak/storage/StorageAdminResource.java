package dev.freshtoken.keycloak.storage;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import jakarta.ws.rs.GET;
import jakarta.ws.rs.POST;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.Produces;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;

import org.jboss.logging.Logger;
import org.keycloak.events.admin.OperationType;
import org.keycloak.models.FederatedIdentityModel;
import org.keycloak.models.IdentityProviderModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.SingleUseObjectProvider;
import org.keycloak.models.UserModel;
import org.keycloak.models.utils.KeycloakModelUtils;
import org.keycloak.services.resources.admin.AdminEventBuilder;
import org.keycloak.services.resources.admin.fgap.AdminPermissionEvaluator;

import dev.freshtoken.keycloak.idp.AbstractFreshTokenFactory;
import dev.freshtoken.keycloak.nativecore.ErrorCode;
import dev.freshtoken.keycloak.nativecore.ErrorReply;
import dev.freshtoken.keycloak.refresh.TokenService;

/**
 * {@code /admin/realms/{realm}/fresh-token-storage}:
 * <ul>
 * <li>{@code GET}: the node's storage settings and, per IdP, how many rows are plain or encrypted (per key id);</li>
 * <li>{@code POST decrypt}: every encrypted row of the realm (any IdP) rewritten plain, in the stock format
 * (needs mode {@code decrypt-only}: the uninstall path);</li>
 * <li>{@code POST encrypt}: every row of our IdP types encrypted with the first key (plain rows, rows under
 * older keys or in the older format; needs mode {@code encrypt}); {@code plainRemaining} says how many plain rows
 * of our types are left (refused with {@code storage_plaintext_row} unless plain rows are allowed).</li>
 * </ul>
 * Each row is converted under the same per-user lock as a refresh, in a transaction of its own, read and written
 * through the same locked row path as a refresh ({@link StoredRow}, never Keycloak's cached model). A row that
 * cannot be converted (wrong or missing key) is left untouched and counted as failed. Needs manage-realm
 * and manage-users.
 */
public class StorageAdminResource {

    private static final Logger LOG = Logger.getLogger("dev.freshtoken.keycloak");

    private final KeycloakSession session;
    private final RealmModel realm;
    private final AdminPermissionEvaluator auth;
    private final AdminEventBuilder adminEvent;

    StorageAdminResource(KeycloakSession session, RealmModel realm, AdminPermissionEvaluator auth, AdminEventBuilder adminEvent) {
        this.session = session;
        this.realm = realm;
        this.auth = auth;
        this.adminEvent = adminEvent;
    }

    private void requireAdmin() {
        auth.realm().requireManageRealm();
        auth.users().requireManage();
    }

    @GET
    @Produces(MediaType.APPLICATION_JSON)
    public Response status() {
        requireAdmin();
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("node", Storage.info());
        Map<String, Object> idps = new LinkedHashMap<>();
        String realmId = realm.getId();
        for (IdentityProviderModel idp : identityProviders(realmId)) {
            Map<String, Object> counts = new LinkedHashMap<>();
            Map<String, Integer> byKid = new LinkedHashMap<>();
            int[] plain = {0};
            for (String userId : linkedUsers(realmId, idp.getAlias())) {
                String token = KeycloakModelUtils.runJobInTransactionWithResult(session.getKeycloakSessionFactory(), s -> {
                    FederatedIdentityModel fi = federatedIdentity(s, realmId, userId, idp.getAlias());
                    return fi == null ? null : fi.getToken();
                });
                if (token == null || token.isEmpty()) {
                    continue;
                }
                if (Storage.isSealed(token)) {
                    String rest = token.substring(5); // "ftk1." or "ftk2."
                    int dot = rest.indexOf('.');
                    byKid.merge(dot < 0 ? "?" : rest.substring(0, dot), 1, Integer::sum);
                } else {
                    plain[0]++;
                }
            }
            counts.put("type", idp.getProviderId());
            counts.put("plain", plain[0]);
            counts.put("encrypted", byKid);
            idps.put(idp.getAlias(), counts);
        }
        out.put("identityProviders", idps);
        return Response.ok(out, MediaType.APPLICATION_JSON_TYPE).build();
    }

    @POST
    @Path("decrypt")
    @Produces(MediaType.APPLICATION_JSON)
    public Response decrypt() {
        requireAdmin();
        if (!Storage.configured() || !"decrypt-only".equals(Storage.mode())) {
            return conflict("Decrypting needs the storage keys with mode decrypt-only on every node (otherwise refreshes "
                    + "would encrypt rows again): set --spi-admin-realm-restapi-extension--fresh-token-storage--mode=decrypt-only, "
                    + "restart, then decrypt.");
        }
        return run(true);
    }

    @POST
    @Path("encrypt")
    @Produces(MediaType.APPLICATION_JSON)
    public Response encrypt() {
        requireAdmin();
        if (!Storage.configured() || !"encrypt".equals(Storage.mode())) {
            return conflict("Encrypting needs a storage key file with mode encrypt.");
        }
        return run(false);
    }

    private Response conflict(String description) {
        return ErrorReply.of(ErrorCode.STORAGE_MODE_CONFLICT, description);
    }

    private Response run(boolean decrypt) {
        String realmId = realm.getId();
        SingleUseObjectProvider locks = session.singleUseObjects();
        Map<String, Object> result = new LinkedHashMap<>();
        Map<String, Integer> totals = new LinkedHashMap<>();
        Map<String, Object> perIdp = new LinkedHashMap<>();
        for (IdentityProviderModel idp : identityProviders(realmId)) {
            String alias = idp.getAlias();
            if (!decrypt && !AbstractFreshTokenFactory.PROVIDER_IDS.contains(idp.getProviderId())) {
                continue; // stock providers cannot read encrypted rows
            }
            Map<String, Integer> counts = new LinkedHashMap<>();
            for (String userId : linkedUsers(realmId, alias)) {
                String lockKey = TokenService.lockKey(realmId, userId, alias);
                String outcome;
                if (!locks.putIfAbsent(lockKey, TokenService.LOCK_TTL_S)) {
                    outcome = "busy";
                } else {
                    try {
                        outcome = convertRow(realmId, userId, alias, decrypt);
                    } finally {
                        locks.remove(lockKey);
                    }
                }
                counts.merge(outcome, 1, Integer::sum);
                totals.merge(outcome, 1, Integer::sum);
            }
            perIdp.put(alias, counts);
        }
        result.put("operation", decrypt ? "decrypt" : "encrypt");
        result.put("totals", totals);
        result.put("identityProviders", perIdp);
        if (!decrypt) {
            // What is still refused while encrypting (storage_plaintext_row) unless plain rows are allowed.
            result.put("plainRemaining", plainRows(realmId));
        }
        LOG.infof("fresh-token: storage %s of realm '%s': %s", decrypt ? "decrypt" : "encrypt", realm.getName(), totals);
        try {
            adminEvent.operation(OperationType.ACTION).resourcePath(session.getContext().getUri()).representation(result).success();
        } catch (RuntimeException e) {
            LOG.debugf("fresh-token: admin event not recorded (%s)", e.getClass().getSimpleName());
        }
        return Response.ok(result, MediaType.APPLICATION_JSON_TYPE).build();
    }

    /**
     * One row, in a transaction of its own: {@code decrypted}/{@code encrypted}/{@code reencrypted}/{@code unchanged}/{@code empty}/{@code failed}.
     * The row is read and written the way a refresh does it (issue 11 item 7): read as committed with the database
     * row lock ({@link StoredRow#lockAndRead}, held until this transaction commits) and written with a new model.
     * Never through Keycloak's cached federated-identity model: the user cache hands out its cached object itself,
     * the one a concurrent V1 token request holds as {@code identity}; setting its token would make that request
     * write the converted old token set back over the newer one a refresh stored meanwhile.
     */
    private String convertRow(String realmId, String userId, String alias, boolean decrypt) {
        try {
            return KeycloakModelUtils.runJobInTransactionWithResult(session.getKeycloakSessionFactory(), s -> {
                RealmModel r = s.realms().getRealm(realmId);
                if (r == null) {
                    return "empty";
                }
                s.getContext().setRealm(r);
                UserModel u = s.users().getUserById(r, userId);
                if (u == null) {
                    return "empty";
                }
                String subject;
                String username;
                String token;
                StoredRow.Row locked = StoredRow.lockAndRead(s, userId, alias);
                if (locked != null) {
                    subject = locked.federatedUserId();
                    username = locked.federatedUsername();
                    token = locked.token();
                } else {
                    // No local row: a link kept by a user-storage provider (BROKER_LINK). Our refresh never writes
                    // those (it reads local rows only); read it and write a copy, never the model itself.
                    FederatedIdentityModel fi = s.users().getFederatedIdentity(r, u, alias);
                    if (fi == null) {
                        return "empty";
                    }
                    subject = fi.getUserId();
                    username = fi.getUserName();
                    token = fi.getToken();
                }
                if (token == null || token.isEmpty()) {
                    return "empty";
                }
                Storage.Converted c;
                try {
                    c = decrypt ? Storage.unseal(realmId, userId, alias, subject, token)
                            : Storage.seal(realmId, userId, alias, subject, token, null);
                } catch (Storage.StorageException e) {
                    LOG.warnf("fresh-token: storage %s: row of user %s, IdP '%s' left unchanged (%s): %s",
                            decrypt ? "decrypt" : "encrypt", userId, alias, e.code(), e.getMessage());
                    return "failed";
                }
                if (c.changed()) {
                    s.users().updateFederatedIdentity(r, u, new FederatedIdentityModel(alias, subject, username, c.value()));
                }
                return c.action();
            });
        } catch (RuntimeException e) {
            LOG.warnf("fresh-token: storage conversion of the row of user %s, IdP '%s' failed (%s)", userId, alias,
                    e.getClass().getSimpleName());
            return "failed";
        }
    }

    /** Plain (unencrypted, non-empty) rows of our IdP types in the realm, read now. */
    private int plainRows(String realmId) {
        int n = 0;
        for (IdentityProviderModel idp : identityProviders(realmId)) {
            if (!AbstractFreshTokenFactory.PROVIDER_IDS.contains(idp.getProviderId())) {
                continue;
            }
            for (String userId : linkedUsers(realmId, idp.getAlias())) {
                String token = KeycloakModelUtils.runJobInTransactionWithResult(session.getKeycloakSessionFactory(), s -> {
                    FederatedIdentityModel fi = federatedIdentity(s, realmId, userId, idp.getAlias());
                    return fi == null ? null : fi.getToken();
                });
                if (token != null && !token.isEmpty() && !Storage.isSealed(token)) {
                    n++;
                }
            }
        }
        return n;
    }

    private List<IdentityProviderModel> identityProviders(String realmId) {
        return KeycloakModelUtils.runJobInTransactionWithResult(session.getKeycloakSessionFactory(), s -> {
            s.getContext().setRealm(s.realms().getRealm(realmId));
            return new ArrayList<>(s.identityProviders().getAllStream().toList());
        });
    }

    private List<String> linkedUsers(String realmId, String alias) {
        return KeycloakModelUtils.runJobInTransactionWithResult(session.getKeycloakSessionFactory(), s -> {
            RealmModel r = s.realms().getRealm(realmId);
            s.getContext().setRealm(r);
            return new ArrayList<>(s.users().searchForUserStream(r, Map.of(UserModel.IDP_ALIAS, alias), null, null)
                    .map(u -> u.getId()) /* not UserModel::getId: that links to Model, absent before 26.6 */.toList());
        });
    }

    private static FederatedIdentityModel federatedIdentity(KeycloakSession s, String realmId, String userId, String alias) {
        RealmModel r = s.realms().getRealm(realmId);
        s.getContext().setRealm(r);
        UserModel u = s.users().getUserById(r, userId);
        return u == null ? null : s.users().getFederatedIdentity(r, u, alias);
    }
}
