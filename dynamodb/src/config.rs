use crate::RequestCounter;

/// The names of every table and queue, derived from one prefix so that several stacks (or
/// tests) can share an account or an emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceNames {
    /// The prefix, e.g. `messaging-dev-`.
    pub prefix: String,
}

impl ResourceNames {
    /// Names under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// A table or queue name under the prefix.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// The event table (stream enabled, `NEW_IMAGE`).
    pub fn events_table(&self) -> String {
        self.name("events")
    }

    /// The claims table (idempotency records, token hashes, delivery de-duplication).
    pub fn claims_table(&self) -> String {
        self.name("claims")
    }

    /// The FIFO queue of accepted direct messages.
    pub fn direct_queue(&self) -> String {
        self.name("direct.fifo")
    }

    /// The FIFO queue of accepted group messages.
    pub fn group_queue(&self) -> String {
        self.name("group.fifo")
    }
}

/// The AWS SDK clients, built once from the SDK's standard configuration
/// (`AWS_ENDPOINT_URL`, `AWS_REGION`, the credentials chain).
#[derive(Clone, Debug)]
pub struct AwsClients {
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// DynamoDB Streams.
    pub streams: aws_sdk_dynamodbstreams::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
}

impl AwsClients {
    /// Clients from the environment.
    pub async fn from_env() -> Self {
        let config = crate::load_sdk_config().await;
        Self::from_config(&config)
    }

    /// Clients from a loaded configuration.
    pub fn from_config(config: &aws_config::SdkConfig) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            streams: aws_sdk_dynamodbstreams::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
        }
    }

    /// Clients whose every request is counted by `counter`.
    pub fn counted(config: &aws_config::SdkConfig, counter: &RequestCounter) -> Self {
        let dynamodb = aws_sdk_dynamodb::config::Builder::from(config)
            .interceptor(counter.clone())
            .build();
        let streams = aws_sdk_dynamodbstreams::config::Builder::from(config)
            .interceptor(counter.clone())
            .build();
        let sqs = aws_sdk_sqs::config::Builder::from(config)
            .interceptor(counter.clone())
            .build();
        Self {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb),
            streams: aws_sdk_dynamodbstreams::Client::from_conf(streams),
            sqs: aws_sdk_sqs::Client::from_conf(sqs),
        }
    }
}
