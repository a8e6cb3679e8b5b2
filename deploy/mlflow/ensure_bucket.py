"""Create the artifact bucket on the S3 endpoint if it is missing (MinIO starts with none)."""

import os
import time

import boto3
from botocore.exceptions import ClientError, EndpointConnectionError

bucket = os.environ.get("MLFLOW_ARTIFACT_BUCKET", "mlflow")
s3 = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"])
for _attempt in range(60):  # MinIO may still be starting
    try:
        s3.head_bucket(Bucket=bucket)
        break
    except ClientError:
        s3.create_bucket(Bucket=bucket)
        break
    except EndpointConnectionError:
        time.sleep(2)
else:
    raise SystemExit(f"S3 endpoint {os.environ['MLFLOW_S3_ENDPOINT_URL']} never answered")
