package dev.freshtoken.keycloak.refresh;

import dev.freshtoken.keycloak.nativecore.CoreAnswer;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Map;

import org.junit.jupiter.api.Test;

/** The kept token set of a refused write (issue 11 item 8a): when it applies, and the warning when it cannot be kept. */
class KeptTest {

    @Test
    void kept_set_applies_only_to_the_stale_row_it_supersedes() {
        String stale = "{\"access_token\":\"AT-SAMPLE-kept-1\",\"refresh_token\":\"RT-SAMPLE-kept-1\"}";
        Map<String, String> kept = Map.of(Kept.ROW, TokenService.fingerprint(stale), Kept.STORE, "{\"refresh_token\":\"RT-SAMPLE-kept-2\"}");
        assertTrue(Kept.matching(kept, TokenService.fingerprint(stale)));
        assertFalse(Kept.matching(kept, TokenService.fingerprint("{\"refresh_token\":\"RT-SAMPLE-relogin\"}")));
        assertFalse(Kept.matching(null, TokenService.fingerprint(stale)));
        assertFalse(Kept.matching(Map.of(Kept.ROW, TokenService.fingerprint(stale), Kept.STORE, ""), TokenService.fingerprint(stale)));
        assertFalse(Kept.matching(kept, null));
    }

    @Test
    void kept_key_covers_realm_user_and_idp() {
        assertEquals("fresh-token:kept:r1:u1:entra", Kept.key("r1", "u1", "entra"));
        assertFalse(Kept.key("r1", "u1", "entra").equals(Kept.key("r2", "u1", "entra")));
    }

    @Test
    void token_not_persisted_warning_is_added_to_the_token_response_of_an_ok_answer_only() {
        CoreAnswer ok = CoreAnswer.parse(
                "{\"ok\":{\"action\":\"refreshed\",\"response\":{\"access_token\":\"AT-SAMPLE-kept-3\"},\"store\":\"x\"}}");
        CoreAnswer warned = ok.withWarning(TokenService.NOT_PERSISTED);
        assertEquals("token_not_persisted", warned.ok().path("response").path("warning").asText());
        assertEquals("AT-SAMPLE-kept-3", warned.ok().path("response").path("access_token").asText());
        assertNull(warned.err());
        CoreAnswer err = CoreAnswer.parse("{\"err\":{\"code\":\"retry_later\",\"status\":503}}");
        assertSame(err, err.withWarning(TokenService.NOT_PERSISTED));
    }
}
