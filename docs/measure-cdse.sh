#!/usr/bin/env bash
# One run: intake of a tile-year from the SAFE archive vs from the CDSE emulator serving the same
# archive (cold source cache → directory store; warm source cache → S3 store), plus per-day search.
#   cargo build --release && datacube fixture --out ARCHIVE --year 2024 --scenes 8 --size full
#   docs/measure-cdse.sh ARCHIVE [WORK_DIR]        (as root to drop the page cache between runs)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DC=$ROOT/target/release/datacube
A=$(cd "${1:?usage: docs/measure-cdse.sh ARCHIVE [WORK_DIR]}" && pwd)
M=${2:-/tmp/measure-cdse}
drop_caches() { sync; if [ -w /proc/sys/vm/drop_caches ]; then echo 3 >/proc/sys/vm/drop_caches; fi; }
rm -rf $M; mkdir -p $M
t() { local s=$(date +%s.%N); "$@"; local e=$(date +%s.%N); echo "TIME $(echo "$e - $s" | bc)"; }
echo "== emulator"
s=$(date +%s.%N)
EMULATOR_ACCESS_KEY=k EMULATOR_SECRET_KEY=s $ROOT/scripts/emulate-cdse $A --dir $M/emu > $M/emu.out 2>$M/emu.err &
EMU=$!
trap 'kill $EMU; wait $EMU' EXIT
until grep -qx READY $M/emu.out 2>/dev/null; do sleep 0.1; done
echo "READY after $(echo "$(date +%s.%N) - $s" | bc) s"
STAC=$(sed -n 's/^STAC_URL=//p' $M/emu.out); S3=$(sed -n 's/^S3_ENDPOINT=//p' $M/emu.out)
mkdir -p $M/aws
printf '[profile cdse]\nendpoint_url = %s\nregion = default\n' "$S3" > $M/aws/config
printf '[cdse]\naws_access_key_id = k\naws_secret_access_key = s\n' > $M/aws/credentials
export AWS_CONFIG_FILE=$M/aws/config AWS_SHARED_CREDENTIALS_FILE=$M/aws/credentials
drop_caches
echo "== safe -> dir"
t $DC intake --source safe:$A --store $M/safe --tile 35VLH --year 2024 --no-progress 2>&1 | grep -v "^20"
drop_caches
echo "== cdse (cold source cache) -> dir"
t $DC intake --source cdse --stac-url $STAC --source-cache $M/cache --store $M/cdse --tile 35VLH --year 2024 --no-progress 2>&1 | grep -v "^20"
du -sb $M/cache
drop_caches
echo "== cdse (warm source cache) -> s3://cubes/m"
t $DC intake --source cdse --stac-url $STAC --source-cache $M/cache --store s3://cubes/m --store-profile cdse --tile 35VLH --year 2024 --no-progress 2>&1 | grep -v "^20"
echo "== per-day search (60m only, warm cache, empty store)"
t $DC intake --source cdse --stac-url $STAC --source-cache $M/cache --store $M/perday --per-day --resolutions 60m --tile 35VLH --year 2024 --no-progress 2>&1 | grep -v "^20"
echo "== single search (60m only, warm cache, empty store)"
t $DC intake --source cdse --stac-url $STAC --source-cache $M/cache --store $M/single --resolutions 60m --tile 35VLH --year 2024 --no-progress 2>&1 | grep -v "^20"
diff -rq $M/safe $M/cdse -x catalog.json -x zarr.json && echo "safe and cdse stores: identical"
diff -rq $M/safe $M/emu/s3/cubes/m -x catalog.json -x zarr.json && echo "safe and s3 store: identical"
