package dev.freshtoken.keycloak.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.Semaphore;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The per-node limit of upstream refreshes (issue 11 item 12); the end-to-end proof is tests/e2e/test_refresh_limit.py. */
class RefreshLimiterTest {

    @AfterEach
    void defaults() {
        RefreshLimiter.reset();
    }

    @Test
    void defaultLimitIsSixteen() {
        assertEquals(16, RefreshLimiter.limit());
    }

    @Test
    void beyondTheLimitNoPermitIsHandedOutAndTheWaitIsBounded() {
        RefreshLimiter.configure("2", "100");
        Semaphore a = RefreshLimiter.tryAcquire();
        Semaphore b = RefreshLimiter.tryAcquire();
        assertNotNull(a);
        assertNotNull(b);
        long t0 = System.nanoTime();
        assertNull(RefreshLimiter.tryAcquire());
        long waitedMs = (System.nanoTime() - t0) / 1_000_000;
        assertTrue(waitedMs >= 90 && waitedMs < 2_000, "waited " + waitedMs + " ms");
        assertEquals(2, RefreshLimiter.inFlight());
        a.release();
        assertNotNull(RefreshLimiter.tryAcquire());
    }

    @Test
    void unsetOptionsMeanTheDefaults() {
        RefreshLimiter.configure("3", null);
        assertEquals(3, RefreshLimiter.limit());
        RefreshLimiter.configure(null, " ");
        assertEquals(16, RefreshLimiter.limit());
    }

    @Test
    void anInvalidSettingStopsStartUpWithAClearMessage() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> RefreshLimiter.configure("lots", null));
        assertTrue(e.getMessage().contains("max-concurrent-refreshes"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> RefreshLimiter.configure("0", null));
        assertThrows(IllegalArgumentException.class, () -> RefreshLimiter.configure(null, "60000"));
        assertEquals(16, RefreshLimiter.limit());
    }
}
