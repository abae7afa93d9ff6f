package dev.freshtoken.keycloak.refresh;

import java.lang.reflect.InvocationHandler;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Function;

import org.keycloak.models.ClientModel;
import org.keycloak.models.IdentityProviderModel;
import org.keycloak.models.KeycloakContext;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.SingleUseObjectProvider;
import org.keycloak.models.UserModel;
import org.keycloak.models.UserProvider;

import dev.freshtoken.keycloak.idp.FreshTokenConfig;
import dev.freshtoken.keycloak.nativecore.CoreAnswer;
import dev.freshtoken.keycloak.nativecore.CoreRequest;

/**
 * Keycloak faked at the SPI edge for the refresh service's unit tests: interfaces answered by
 * {@link Proxy} (a method not scripted answers null / false / 0), an in-memory single-use store,
 * a scripted native core and scripted database rows.
 */
final class Fakes {

    static final String REALM_ID = "realm-1";
    static final String USER_ID = "user-1";
    static final String ALIAS = "entra";
    static final String STORED = "{\"access_token\":\"AT-SAMPLE-stored\",\"refresh_token\":\"RT-SAMPLE-stored\"}";

    private Fakes() {
    }

    /** An interface whose methods answer from {@code answers} by name, else the type's default. */
    @SuppressWarnings("unchecked")
    static <T> T fake(Class<T> type, Map<String, Function<Object[], Object>> answers) {
        InvocationHandler h = (proxy, method, args) -> {
            Function<Object[], Object> a = answers.get(method.getName());
            if (a != null) {
                return a.apply(args == null ? new Object[0] : args);
            }
            if (method.getName().equals("toString")) {
                return "fake " + type.getSimpleName();
            }
            if (method.getName().equals("hashCode")) {
                return System.identityHashCode(proxy);
            }
            if (method.getName().equals("equals")) {
                return proxy == args[0];
            }
            return defaultValue(method);
        };
        return (T) Proxy.newProxyInstance(Fakes.class.getClassLoader(), new Class<?>[] {type}, h);
    }

    private static Object defaultValue(Method m) {
        Class<?> r = m.getReturnType();
        if (r == boolean.class) {
            return false;
        }
        if (r == int.class || r == long.class || r == short.class || r == byte.class) {
            return r == long.class ? (Object) 0L : r == int.class ? (Object) 0 : r == short.class ? (Object) (short) 0 : (Object) (byte) 0;
        }
        if (r == double.class || r == float.class) {
            return r == double.class ? (Object) 0d : (Object) 0f;
        }
        if (r == char.class) {
            return (char) 0;
        }
        return null;
    }

    /** Keycloak's single-use store in memory; {@code lockAnswers} scripts the next putIfAbsent results. */
    static final class SingleUse {
        final Map<String, Map<String, String>> entries = new ConcurrentHashMap<>();
        final Deque<Boolean> lockAnswers = new ArrayDeque<>();
        final List<String> lockAttempts = new ArrayList<>();
        /** Runs on each putIfAbsent, before it answers (a concurrent holder's work). */
        Runnable onLockAttempt = () -> { };

        SingleUseObjectProvider provider() {
            Map<String, Function<Object[], Object>> m = new HashMap<>();
            m.put("putIfAbsent", a -> {
                String key = (String) a[0];
                lockAttempts.add(key);
                onLockAttempt.run();
                Boolean scripted = lockAnswers.poll();
                if (scripted != null) {
                    return scripted;
                }
                return entries.putIfAbsent(key, Map.of()) == null;
            });
            m.put("put", a -> entries.put((String) a[0], (Map<String, String>) a[2]));
            m.put("get", a -> entries.get((String) a[0]));
            m.put("remove", a -> entries.remove((String) a[0]));
            m.put("contains", a -> entries.containsKey((String) a[0]));
            return fake(SingleUseObjectProvider.class, m);
        }
    }

    /** The native core: answers scripted per call, every request kept. */
    static final class Core implements Function<CoreRequest, CoreAnswer> {
        final List<CoreRequest> requests = new ArrayList<>();
        final Deque<CoreAnswer> answers = new ArrayDeque<>();

        Core answer(String raw) {
            answers.add(CoreAnswer.parse(raw));
            return this;
        }

        @Override
        public CoreAnswer apply(CoreRequest r) {
            requests.add(r);
            CoreAnswer a = answers.poll();
            if (a == null) {
                throw new AssertionError("unexpected core call: " + r.op());
            }
            return a;
        }

        List<String> ops() {
            return requests.stream().map(CoreRequest::op).toList();
        }
    }

    /** The database rows: the committed value and the row-locked refresh, scripted. */
    static final class Rows implements SingleFlight.Rows {
        final Deque<String> committed = new ArrayDeque<>();
        RowLockedRefresh.Held held;
        int refreshes;
        int reads;

        @Override
        public String readStoredToken(String realmId, String userId) {
            reads++;
            return committed.size() > 1 ? committed.poll() : committed.peek();
        }

        @Override
        public RowLockedRefresh.Held refresh(Ask ask, String method) {
            refreshes++;
            return held;
        }

        @Override
        public CoreAnswer storageUnavailable(RuntimeException e) {
            throw new AssertionError("no database failure expected", e);
        }
    }

    static FreshTokenConfig config(Map<String, String> settings) {
        IdentityProviderModel model = new IdentityProviderModel();
        model.setAlias(ALIAS);
        model.setProviderId("entra-oidc");
        model.getConfig().putAll(settings);
        return new FreshTokenConfig(model);
    }

    /** A session in realm {@link #REALM_ID} whose federated identity belongs to user {@link #USER_ID}. */
    static KeycloakSession session(SingleUse store) {
        return session(store, null);
    }

    /** As {@link #session(SingleUse)}, the request made by client {@code clientId} (null: none). */
    static KeycloakSession session(SingleUse store, String clientId) {
        RealmModel realm = fake(RealmModel.class, Map.of("getId", a -> REALM_ID, "getName", a -> "realm-one"));
        UserModel user = fake(UserModel.class, Map.of("getId", a -> USER_ID));
        UserProvider users = fake(UserProvider.class, Map.of("getUserByFederatedIdentity", a -> user));
        ClientModel client = clientId == null ? null : fake(ClientModel.class, Map.of("getClientId", a -> clientId));
        KeycloakContext context = fake(KeycloakContext.class, Map.of("getRealm", a -> realm, "getClient", a -> client));
        SingleUseObjectProvider singleUse = store.provider();
        return fake(KeycloakSession.class, Map.of("getContext", a -> context, "users", a -> users,
                "singleUseObjects", a -> singleUse));
    }
}
