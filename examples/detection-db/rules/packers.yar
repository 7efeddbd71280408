/*
    Generic packer markers in Windows PE files. Packing is not malicious by itself; these
    rules raise the priority of a sample for further (unpacked) analysis.
*/

import "math"
import "pe"

rule Packer_UPX_Sections
{
    meta:
        author = "Overt example detection team"
        description = "PE file packed with UPX (section names and stub marker)"
        reference = "https://upx.github.io/"
        date = "2024-02-19"
        version = 1
        id = "6ad725c3-e45f-41c5-94d9-c58af4b6827f"
        severity = "low"

    strings:
        $upx0 = "UPX0" ascii
        $upx1 = "UPX1" ascii
        $marker = "UPX!" ascii

    condition:
        uint16(0) == 0x5A4D and uint32(uint32(0x3C)) == 0x00004550
        and $upx0 in (0..1024) and $upx1 in (0..1024) and $marker
}

rule Packer_Generic_High_Entropy_Entry_Section
{
    meta:
        author = "Overt example detection team"
        description = "PE file whose entry-point section is nearly random (packed or encrypted)"
        reference = "https://attack.mitre.org/techniques/T1027/002/"
        date = "2024-02-19"
        version = 1
        id = "588be1b8-b414-4d6f-af46-88a0f78f5124"
        mitre_attack = "T1027.002"
        severity = "low"

    condition:
        pe.is_pe and
        for any section in pe.sections : (
            pe.entry_point >= section.raw_data_offset and
            pe.entry_point < section.raw_data_offset + section.raw_data_size and
            section.raw_data_size > 4096 and
            math.entropy(section.raw_data_offset, section.raw_data_size) > 7.2
        )
}
