//! The timer hyper gets for one connection: the header read timeout, re-armed for every
//! request of a keep-alive connection.
//!
//! hyper asks for a new sleep each time it starts reading a request head and drops it
//! once the head has arrived. With `hyper_util`'s `TokioTimer` that is, per request, a
//! tokio timer allocated, inserted into the runtime's timer wheel (under its lock) and
//! removed again. Here the connection keeps one tokio timer: a dropped sleep hands it
//! back, and the next one moves its deadline, which tokio does without touching the
//! wheel when the deadline moves later (it always does here: each deadline is "now +
//! the timeout"). A timer handed back still fires at its old deadline; tokio sees the
//! later deadline and re-files it, or, if no sleep holds it, wakes the connection's
//! task once for nothing, which hyper ignores.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::{Duration, Instant},
};

/// One connection's timer (see the module's documentation).
#[derive(Clone, Default)]
pub(super) struct ConnectionTimer {
    spare: Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>,
}

impl ConnectionTimer {
    fn take_spare(&self) -> Option<Pin<Box<tokio::time::Sleep>>> {
        self.spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl hyper::rt::Timer for ConnectionTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let deadline = tokio::time::Instant::from_std(deadline);
        let inner = match self.take_spare() {
            Some(mut sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        Box::pin(Lent {
            inner: Some(inner),
            home: self.spare.clone(),
        })
    }
}

/// A sleep on the connection's timer, handed back when dropped.
struct Lent {
    inner: Option<Pin<Box<tokio::time::Sleep>>>,
    home: Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>,
}

impl Future for Lent {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.inner.as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl hyper::rt::Sleep for Lent {}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(sleep) = self.inner.take() {
            *self.home.lock().unwrap_or_else(PoisonError::into_inner) = Some(sleep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;

    /// Now on tokio's clock (paused in these tests), as the `Instant` hyper passes.
    fn now() -> Instant {
        tokio::time::Instant::now().into_std()
    }

    #[tokio::test(start_paused = true)]
    async fn a_reused_timer_fires_at_the_new_deadline_not_the_old_one() {
        let timer = ConnectionTimer::default();
        let start = now();
        // A first sleep, polled (so tokio files it), then dropped: its timer is kept.
        let mut first = timer.sleep_until(start + Duration::from_secs(10));
        assert!(poll_once(&mut first).is_pending());
        drop(first);
        assert!(timer.spare.lock().unwrap().is_some());
        // Later, a second sleep reuses it with a later deadline.
        tokio::time::advance(Duration::from_secs(5)).await;
        let second = timer.sleep_until(now() + Duration::from_secs(10));
        assert!(timer.spare.lock().unwrap().is_none());
        second.await;
        assert_eq!(now() - start, Duration::from_secs(15));
        assert!(timer.spare.lock().unwrap().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_timer_fires_at_its_deadline() {
        let timer = ConnectionTimer::default();
        let start = now();
        timer.sleep_until(start + Duration::from_secs(3)).await;
        assert_eq!(now() - start, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_on_a_reused_timer_is_kept_too() {
        let timer = ConnectionTimer::default();
        let start = now();
        let mut first = timer.sleep_until(start + Duration::from_secs(10));
        assert!(poll_once(&mut first).is_pending());
        drop(first);
        timer.sleep_until(start + Duration::from_secs(2)).await;
        assert_eq!(now() - start, Duration::from_secs(2));
    }

    fn poll_once(sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>) -> Poll<()> {
        let waker = std::task::Waker::noop();
        sleep.as_mut().poll(&mut Context::from_waker(waker))
    }
}
