use std::time::Duration;

use amqprs::connection::OpenConnectionArguments;
use amqprs::tls::TlsAdaptor;
use url::Url;

/// The kind of queues declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// Classic queues: the default, for a single broker.
    #[default]
    Classic,
    /// Quorum queues: replicated, for a RabbitMQ cluster.
    Quorum,
}

impl QueueType {
    /// The value of the `x-queue-type` argument.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Quorum => "quorum",
        }
    }
}

/// How to reach the broker and shape the queue.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// `amqp://user:password@host:port/vhost` or `amqps://...` (percent-encoded; the vhost is
    /// `/` when the path is empty, `%2f` also means `/`). Query parameter `heartbeat` (seconds)
    /// is honoured.
    pub url: String,
    /// The queue's name; the exchange and the retry and dead-letter queues are named after it.
    pub queue: String,
    /// Classic or quorum queues.
    pub queue_type: QueueType,
    /// Most unacknowledged messages the broker sends this consumer at once: the sender's
    /// messages in hand plus those it holds until they fall due. AMQP counts a prefetch in 16
    /// bits, so above 65,535 the adapter consumes with several consumers on one channel,
    /// sharing it. At most [`MAX_PREFETCH`].
    pub prefetch: u32,
    /// Most published messages awaiting the broker's confirmation at once.
    pub max_in_flight: usize,
    /// How long a publish waits for its confirmation before it counts as failed.
    pub confirm_timeout: Duration,
    /// Delay before a retried message is delivered again, doubled on each further attempt.
    pub retry_delay: Duration,
    /// The longest retry delay.
    pub max_retry_delay: Duration,
    /// First pause before reconnecting; doubled on each failure up to
    /// [`max_reconnect_delay`](Self::max_reconnect_delay).
    pub reconnect_delay: Duration,
    /// Longest pause between reconnection attempts.
    pub max_reconnect_delay: Duration,
    /// Shown in the broker's management UI for this connection.
    pub connection_name: String,
    /// Delete the queues after they have been unused this long (`x-expires`): for short-lived
    /// deployments and tests. `None` (the default) keeps them.
    pub expire_unused_after: Option<Duration>,
}

impl Default for AmqpConfig {
    /// The local broker's guest account, queue `calendar.reminders` (classic), prefetch
    /// 101,024 (the sender's default 1,024 in hand and 100,000 held), 1,024 in flight, 10 s confirm timeout, retries after 1 s doubling to 5 min, reconnects
    /// after 100 ms doubling to 10 s.
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            queue: "calendar.reminders".to_owned(),
            queue_type: QueueType::Classic,
            prefetch: 101_024,
            max_in_flight: 1_024,
            confirm_timeout: Duration::from_secs(10),
            retry_delay: Duration::from_secs(1),
            max_retry_delay: Duration::from_secs(300),
            reconnect_delay: Duration::from_millis(100),
            max_reconnect_delay: Duration::from_secs(10),
            connection_name: "calendar".to_owned(),
            expire_unused_after: None,
        }
    }
}

/// Why an [`AmqpConfig`] is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmqpConfigError {
    /// The URL does not parse or is not amqp/amqps.
    #[error("invalid AMQP URL: {0}")]
    Url(String),
    /// The queue name is empty or too long for the derived names (AMQP names are at most
    /// 255 bytes; the longest derived one adds 12).
    #[error("queue name must be 1 to 240 bytes of printable ASCII, got {0:?}")]
    QueueName(String),
    /// A count or duration is zero.
    #[error("{0} must be positive")]
    NotPositive(&'static str),
    /// The prefetch is above [`MAX_PREFETCH`].
    #[error("prefetch must be at most {MAX_PREFETCH}, got {0}")]
    Prefetch(u32),
}

/// The largest prefetch: 16 consumers of AMQP's largest prefetch each.
pub const MAX_PREFETCH: u32 = 16 * PREFETCH_PER_CONSUMER;

/// AMQP's largest prefetch for one consumer (a 16-bit count).
pub(super) const PREFETCH_PER_CONSUMER: u32 = u16::MAX as u32;

impl AmqpConfig {
    /// The configuration with `url` and defaults for the rest.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// How many consumers share the prefetch, and the prefetch of each: the fewest consumers
    /// whose 16-bit prefetches add up to at least [`prefetch`](Self::prefetch).
    pub(super) fn consumers(&self) -> (u32, u16) {
        let prefetch = self.prefetch.clamp(1, MAX_PREFETCH);
        let consumers = prefetch.div_ceil(PREFETCH_PER_CONSUMER);
        let each = prefetch.div_ceil(consumers);
        (consumers, u16::try_from(each).unwrap_or(u16::MAX))
    }

    /// Checks the configuration without connecting.
    pub fn validate(&self) -> Result<(), AmqpConfigError> {
        self.connection_arguments()?;
        let name_ok = !self.queue.is_empty()
            && self.queue.len() <= 240
            && self.queue.bytes().all(|b| b.is_ascii_graphic());
        if !name_ok {
            return Err(AmqpConfigError::QueueName(self.queue.clone()));
        }
        if self.prefetch > MAX_PREFETCH {
            return Err(AmqpConfigError::Prefetch(self.prefetch));
        }
        for (name, zero) in [
            ("prefetch", self.prefetch == 0),
            ("max_in_flight", self.max_in_flight == 0),
            ("confirm_timeout", self.confirm_timeout.is_zero()),
        ] {
            if zero {
                return Err(AmqpConfigError::NotPositive(name));
            }
        }
        Ok(())
    }

    /// The delay before delivering again a message whose attempt `attempt` failed.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(20);
        self.retry_delay
            .saturating_mul(1 << doublings)
            .min(self.max_retry_delay)
    }

    /// The URL with its password hidden, for logs.
    pub fn redacted_url(&self) -> String {
        match Url::parse(&self.url) {
            Ok(mut url) => {
                if url.password().is_some() {
                    let _ = url.set_password(Some("***"));
                }
                url.to_string()
            }
            Err(_) => "<invalid URL>".to_owned(),
        }
    }

    /// amqprs's connection arguments for the URL (`amqp://` or `amqps://`, percent-decoded user,
    /// password and virtual host, `?heartbeat=`), named [`connection_name`](Self::connection_name):
    /// also for other clients of the same broker (tests, tools).
    ///
    /// # Errors
    ///
    /// [`AmqpConfigError::Url`] when the URL is not one of those.
    pub fn connection_arguments(&self) -> Result<OpenConnectionArguments, AmqpConfigError> {
        let url = Url::parse(&self.url).map_err(|e| AmqpConfigError::Url(e.to_string()))?;
        let tls = match url.scheme() {
            "amqp" => false,
            "amqps" => true,
            other => {
                return Err(AmqpConfigError::Url(format!(
                    "unsupported scheme {other:?}"
                )));
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| AmqpConfigError::Url("no host".to_owned()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port().unwrap_or(if tls { 5671 } else { 5672 });
        let decode = |text: &str| {
            percent_decode(text)
                .map_err(|_| AmqpConfigError::Url("bad percent-encoding".to_owned()))
        };
        let user = if url.username().is_empty() {
            "guest".to_owned()
        } else {
            decode(url.username())?
        };
        let password = decode(url.password().unwrap_or("guest"))?;
        let path = url.path().strip_prefix('/').unwrap_or(url.path());
        let vhost = if path.is_empty() {
            "/".to_owned()
        } else {
            decode(path)?
        };
        let mut arguments = OpenConnectionArguments::new(&host, port, &user, &password);
        arguments
            .virtual_host(&vhost)
            .connection_name(&self.connection_name);
        for (key, value) in url.query_pairs() {
            if key == "heartbeat" {
                let seconds = value.parse().map_err(|_| {
                    AmqpConfigError::Url(format!("heartbeat {value:?} is not a number"))
                })?;
                arguments.heartbeat(seconds);
            }
        }
        if tls {
            let adaptor = TlsAdaptor::without_client_auth(None, host.clone())
                .map_err(|e| AmqpConfigError::Url(format!("TLS set-up failed: {e}")))?;
            arguments.tls_adaptor(adaptor);
        }
        Ok(arguments.finish())
    }
}

fn percent_decode(text: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
}

/// Installs rustls's `ring` crypto provider as the process default, once; TLS connections
/// (amqps) need one and none is chosen implicitly.
pub(super) fn install_crypto_provider() {
    // Fails only when a provider is already installed, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_urls() {
        let args = AmqpConfig::new("amqp://guest:guest@127.0.0.1:5672/%2f")
            .connection_arguments()
            .unwrap();
        assert_eq!((args.get_host(), args.get_port()), ("127.0.0.1", 5672));
        assert_eq!(args.get_virtual_host(), "/");
        let args = AmqpConfig::new("amqp://app:p%40ss@rabbit/prod?heartbeat=30")
            .connection_arguments()
            .unwrap();
        assert_eq!(args.get_virtual_host(), "prod");
        assert_eq!(args.get_heartbeat(), 30);
        assert_eq!(args.get_port(), 5672);
    }

    #[test]
    fn amqps_uses_tls_on_5671() {
        install_crypto_provider();
        let args = AmqpConfig::new("amqps://user:secret@broker.example.com/")
            .connection_arguments()
            .unwrap();
        assert_eq!(args.get_port(), 5671);
        assert!(args.get_tls_adaptor().is_some());
    }

    #[test]
    fn rejects_what_it_cannot_use() {
        for url in [
            "http://host/",
            "not a url",
            "amqp:///vhost",
            "amqp://h/?heartbeat=soon",
        ] {
            assert!(
                matches!(
                    AmqpConfig::new(url).validate(),
                    Err(AmqpConfigError::Url(_))
                ),
                "{url}"
            );
        }
        let config = AmqpConfig {
            queue: String::new(),
            ..AmqpConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(AmqpConfigError::QueueName(_))
        ));
        let config = AmqpConfig {
            prefetch: 0,
            ..AmqpConfig::default()
        };
        assert_eq!(
            config.validate(),
            Err(AmqpConfigError::NotPositive("prefetch"))
        );
        let config = AmqpConfig {
            prefetch: MAX_PREFETCH + 1,
            ..AmqpConfig::default()
        };
        assert_eq!(
            config.validate(),
            Err(AmqpConfigError::Prefetch(MAX_PREFETCH + 1))
        );
        let config = AmqpConfig {
            prefetch: MAX_PREFETCH,
            ..AmqpConfig::default()
        };
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn a_prefetch_is_shared_by_as_few_consumers_as_amqp_allows() {
        let split = |prefetch| {
            AmqpConfig {
                prefetch,
                ..AmqpConfig::default()
            }
            .consumers()
        };
        assert_eq!(split(1), (1, 1));
        assert_eq!(split(256), (1, 256));
        assert_eq!(split(65_535), (1, 65_535));
        assert_eq!(split(65_536), (2, 32_768));
        assert_eq!(split(101_024), (2, 50_512));
        assert_eq!(split(MAX_PREFETCH), (16, 65_535));
    }

    #[test]
    fn retry_delay_doubles_up_to_the_maximum() {
        let config = AmqpConfig::default();
        let delays: Vec<u64> = (1..=11).map(|a| config.retry_delay(a).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    }

    #[test]
    fn redacts_the_password() {
        let config = AmqpConfig::new("amqp://app:secret@rabbit:5672/prod");
        assert_eq!(config.redacted_url(), "amqp://app:***@rabbit:5672/prod");
    }
}
