package dev.freshtoken.keycloak.refresh;

import dev.freshtoken.keycloak.nativecore.CoreRequest;

/**
 * What one retrieval asks for, passed as a value through the whole flow (no per-request fields):
 * the answer shape, the token asked for (the IdP's own, a resource scope or an on-behalf-of
 * scope) and the row the stored value is bound to (realm id, Keycloak user id, alias, the user's
 * id at the IdP).
 */
record Ask(TokenService.Endpoint endpoint, String resourceScope, String oboScope, CoreRequest.Binding binding) {

    /** The same question for the row of Keycloak user {@code userId} (known after the user lookup). */
    Ask forUser(String userId) {
        return new Ask(endpoint, resourceScope, oboScope,
                new CoreRequest.Binding(binding.realm(), userId, binding.alias(), binding.subject()));
    }

    /** What a shared failure is keyed by besides the row (issue 11 item 9). */
    String question() {
        return (oboScope != null ? "obo\n" + oboScope : resourceScope != null ? "resource\n" + resourceScope : "idp")
                + "\n" + endpoint;
    }
}
