package dev.freshtoken.keycloak.endpoint;

/** Matches a redirect URI against one of a client's registered patterns (exact, or a trailing '*'). */
public final class RedirectMatch {

    private RedirectMatch() {
    }

    public static boolean matches(String pattern, String uri) {
        if (pattern == null || uri == null) {
            return false;
        }
        if (pattern.endsWith("*")) {
            String prefix = pattern.substring(0, pattern.length() - 1);
            return !prefix.isEmpty() && uri.startsWith(prefix) && !uri.contains("..");
        }
        return pattern.equals(uri);
    }
}
