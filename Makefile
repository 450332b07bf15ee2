# Two commands on a fresh machine: `make demo` and `make test`. Both set up first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.splitbench-installed

.PHONY: setup demo test bench system-packages browser android-userland clean ios-agent

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU build kept on this machine.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[all,test]'
	# The device agents' clients apart: pymobiledevice3, Ray and adb-shell's cryptography want
	# typing_extensions>=4.13, xdsl (under litert-torch) declares <4.13. One resolver pass over everything
	# backtracks into old sdists that cannot build; two passes work, and both sides import and run
	# together (checked below; pip prints the declared conflict).
	$(PY) -m pip install --quiet -e '.[android,ray,ios]'
	# litert-torch and executorch ask for different typing-extensions: prove both import.
	$(PY) -c "import litert_torch, executorch.runtime, ai_edge_litert.interpreter, onnxruntime, coremltools, adb_shell, adbutils, pymobiledevice3, ray" >$(VENV)/import-check.log 2>&1 \
		|| { tail -n 5 $(VENV)/import-check.log; echo "setup: a runtime does not import (full log: $(VENV)/import-check.log)"; exit 1; }
	touch $(STAMP)

# The Debian packages the tests use, in one apt-get (needs root and the package registry): headless Chromium for
# the report test, and Android's own shell and coreutils (mksh, toybox) with Google's adb for the loopback phone.
# Without them those tests say so and skip; CI has them.
system-packages:
	@missing=""; for cmd in chromium mksh toybox adb; do command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$cmd"; done; \
	[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver mksh toybox adb >/dev/null) \
		|| echo "system-packages: not installed:$$missing; the tests that need them will be skipped"; }

browser android-userland: system-packages

demo: setup
	$(VENV)/bin/splitbench demo

test: setup system-packages
	$(PY) -m pytest -q

bench: setup
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) results/cache results/demo results/benchmarks

# The iPhone agent app: macOS with Xcode and XcodeGen only, signed with your Apple development team.
# Makes build/ios-agent/SplitbenchAgent.ipa, which any host (Linux too) then installs through [ios].app.
IOS_APP := device_agents/ios/app
IOS_BUILD := build/ios-agent
BUNDLE_ID ?= org.splitbench.agent
ios-agent:
	@command -v xcodebuild >/dev/null 2>&1 || { echo "ios-agent: the agent app builds only on macOS with Xcode (no xcodebuild here); build it on a Mac and copy $(IOS_BUILD)/SplitbenchAgent.ipa to this host"; exit 1; }
	@xcodebuild -version >/dev/null 2>&1 || { echo "ios-agent: xcodebuild does not run: xcode-select points at the command-line tools, not Xcode ($$(xcode-select -p 2>/dev/null)); run sudo xcode-select -s /Applications/Xcode.app/Contents/Developer (docs/ios.md)"; exit 1; }
	@command -v xcodegen >/dev/null 2>&1 || { echo "ios-agent: needs XcodeGen to generate the Xcode project: brew install xcodegen"; exit 1; }
	@[ -n "$(TEAM)" ] || { echo "ios-agent: give your Apple development team id and your own bundle id: make ios-agent TEAM=ABCDE12345 BUNDLE_ID=com.yourname.splitbench-agent (docs/ios.md says where the team id is)"; exit 1; }
	cd $(IOS_APP) && xcodegen generate --quiet
	xcodebuild -project $(IOS_APP)/SplitbenchAgent.xcodeproj -scheme SplitbenchAgent -configuration Release \
		-destination generic/platform=iOS -derivedDataPath $(IOS_BUILD)/derived -allowProvisioningUpdates -quiet \
		DEVELOPMENT_TEAM=$(TEAM) PRODUCT_BUNDLE_IDENTIFIER=$(BUNDLE_ID) build
	rm -rf $(IOS_BUILD)/Payload $(IOS_BUILD)/SplitbenchAgent.ipa && mkdir -p $(IOS_BUILD)/Payload
	cp -R $(IOS_BUILD)/derived/Build/Products/Release-iphoneos/SplitbenchAgent.app $(IOS_BUILD)/Payload/
	cd $(IOS_BUILD) && zip -qry SplitbenchAgent.ipa Payload
	@echo "ios-agent: $(IOS_BUILD)/SplitbenchAgent.ipa (bundle id $(BUNDLE_ID)); in the spec: [ios] app = \"$(IOS_BUILD)/SplitbenchAgent.ipa\" and bundle_id = \"$(BUNDLE_ID)\""
