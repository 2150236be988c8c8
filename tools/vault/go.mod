module hookgate.local/tools/vault

go 1.26
